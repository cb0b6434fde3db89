//! Thread-per-core serving: N worker threads, each running a single-threaded Tokio runtime
//! with its own listening socket per Gateway port (see `listener`) and its own upstream
//! connection pool. A client connection, its requests and the pooled backend connections
//! they use all live on the worker that accepted it, so forwarding a request wakes no other
//! thread. What workers share is read-mostly: the model, TLS configurations, outlier state,
//! metrics and the connection limit.

use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;

use super::Shared;
use super::error::ProxyError;
use super::metrics::WorkerLabels;
use super::upstream::Upstreams;

/// One worker, as the proxy sees it from outside.
pub(crate) struct Worker {
    /// Its runtime: sockets are registered with it and accept loops spawned on it.
    pub(crate) runtime: tokio::runtime::Handle,
    /// Its state: the shared parts plus its own upstream pool.
    pub(crate) shared: Arc<Shared>,
}

/// The worker threads; dropping this stops them (their runtimes drop every task: accept
/// loops, connections, pooled backend connections) and waits for them.
pub(crate) struct Threads {
    running: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Drop for Threads {
    fn drop(&mut self) {
        let running = std::mem::take(&mut self.running);
        let joins: Vec<JoinHandle<()>> = running
            .into_iter()
            .map(|(stop, thread)| {
                let _ = stop.send(());
                thread
            })
            .collect();
        for thread in joins {
            if thread.join().is_err() {
                tracing::warn!("a proxy worker thread panicked");
            }
        }
    }
}

/// Starts `count` workers whose state is `template` with a fresh upstream pool each.
pub(crate) fn start(count: usize, template: &Shared) -> Result<(Vec<Worker>, Threads), ProxyError> {
    let mut workers = Vec::with_capacity(count);
    let mut threads = Threads {
        running: Vec::with_capacity(count),
    };
    for index in 0..count {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ProxyError::Worker)?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("lbgw-proxy-{index}"))
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime drops its tasks (connections past the drain).
                drop(runtime);
            })
            .map_err(ProxyError::Worker)?;
        threads.running.push((stop, thread));
        let connections: Counter = template
            .metrics
            .worker_connections
            .get_or_create(&WorkerLabels {
                worker: index.to_string(),
            })
            .clone();
        workers.push(Worker {
            runtime: handle,
            shared: Arc::new(Shared {
                upstreams: Arc::new(Upstreams::new()),
                route_metrics: Arc::default(),
                worker_connections: connections,
                ..template.clone()
            }),
        });
    }
    Ok((workers, threads))
}

/// The default number of workers: one per CPU this process may run on.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
