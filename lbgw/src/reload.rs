//! Hot reload: a new [`Config`] snapshot is validated and swapped in while lbgw serves.
//!
//! [`Reloader::apply`] is the one entry point, whatever the snapshot came from (the
//! `--config` files on SIGHUP or when they change, see [`FileWatch`]; a Kubernetes source
//! feeds the same function). It resolves the pools, allocates the VIPs (keeping every
//! object's address: the previous allocation is the starting point), builds the Gateway
//! model, then hands it to the proxy, which binds new listener ports first (all or nothing),
//! swaps the model atomically and closes the ports no longer used. Requests in flight finish
//! under the model they started with; keep-alive connections, SSE streams and WebSockets go
//! on; new requests (also on open connections) and new TLS handshakes (a rotated Secret) see
//! the new one. Anything that fails leaves the running configuration untouched.
//!
//! What the XDP side needs after a reload (VIP set, served ports) is left to the daemon,
//! which owns the data plane: [`Reloader::current`] has the applied plan.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::admin::Admin;
use crate::config::{self, Config, ConfigError, error_chain};
use crate::gateway::GatewayModel;
use crate::ipam::{self, IpamError, Plan, Pools, State};
use crate::proxy::metrics::ResultLabels;
use crate::proxy::{PortChanges, ProxyError, ProxyHandle, ProxyMetrics};

/// Why a new configuration was rejected; the previous one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files do not load (YAML, unknown fields, invalid values...).
    #[error("{}", .0.errors().iter().map(|e| error_chain(e)).collect::<Vec<_>>().join("; "))]
    Config(#[from] ConfigError),
    /// The LoadBalancer IP pools do not resolve.
    #[error("{}", .0.errors().iter().map(|e| error_chain(e)).collect::<Vec<_>>().join("; "))]
    Ipam(#[from] IpamError),
    /// A new listener port cannot be bound.
    #[error("{}", error_chain(.0))]
    Proxy(#[from] ProxyError),
    /// Watching the configuration files.
    #[error("watching {path} for changes")]
    Watch {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
}

/// The configuration being served.
pub struct Current {
    /// The objects.
    pub config: Config,
    /// The pools they were allocated from.
    pub pools: Pools,
    /// The VIP allocation.
    pub plan: Plan,
}

/// What a reload changed.
#[derive(Clone, Debug, Default)]
pub struct ReloadSummary {
    /// Reloads applied so far, this one included.
    pub generation: u64,
    /// Listener ports bound and closed.
    pub ports: PortChanges,
    /// VIPs allocated.
    pub vips_added: Vec<std::net::IpAddr>,
    /// VIPs released.
    pub vips_removed: Vec<std::net::IpAddr>,
    /// Gateway listeners served.
    pub listeners: usize,
}

/// Where VIP allocations are remembered, and the pools' command-line sources.
#[derive(Clone, Debug)]
pub struct IpamSource {
    /// `--lb-cidr`.
    pub lb_cidrs: Vec<String>,
    /// `CILIUM_LB_CIDR`.
    pub env_lb_cidr: Option<String>,
    /// Where allocations survive restarts.
    pub allocations: Allocations,
}

/// Where the VIP allocations of earlier runs are kept.
#[derive(Clone, Debug)]
pub enum Allocations {
    /// File mode: a state file (`--state`), written after every allocation.
    StateFile(PathBuf),
    /// Kubernetes mode: the objects' status, which the leader writes
    /// ([`crate::kube::state_from_status`]); what it has published comes first, then the
    /// running allocation for objects it has not published yet.
    Status,
}

impl IpamSource {
    /// The pools of `config` and its allocation, starting from `running` (the allocation
    /// being served, empty at start) and from what earlier runs kept.
    pub fn allocate(&self, config: &Config, running: &State) -> Result<(Pools, Plan), IpamError> {
        let pools = Pools::resolve(&self.lb_cidrs, self.env_lb_cidr.as_deref(), config)?;
        let previous = match &self.allocations {
            Allocations::StateFile(_) => running.clone(),
            Allocations::Status => {
                crate::kube::state_from_status(config, &pools).merged_with(running)
            }
        };
        let plan = ipam::allocate(&pools, config, &previous);
        for err in plan.errors.iter().flat_map(|e| e.errors()) {
            tracing::error!("{}", error_chain(err));
        }
        if let Allocations::StateFile(path) = &self.allocations
            && let Err(err) = plan.state().save(path)
        {
            tracing::warn!(
                "{}; allocations will not be remembered across restarts",
                error_chain(&err)
            );
        }
        Ok((pools, plan))
    }
}

/// Applies configuration snapshots to the running proxy (and tells the admin endpoint).
pub struct Reloader {
    ipam: IpamSource,
    proxy: ProxyHandle,
    admin: Option<Arc<Admin>>,
    metrics: Arc<ProxyMetrics>,
    current: Current,
    generation: u64,
}

impl Reloader {
    /// A reloader for a proxy serving `current`.
    pub fn new(
        ipam: IpamSource,
        proxy: ProxyHandle,
        admin: Option<Arc<Admin>>,
        metrics: Arc<ProxyMetrics>,
        current: Current,
    ) -> Self {
        Self {
            ipam,
            proxy,
            admin,
            metrics,
            current,
            generation: 0,
        }
    }

    /// The configuration being served.
    pub fn current(&self) -> &Current {
        &self.current
    }

    /// Validates `config` and serves it, or leaves everything as it was and says why.
    pub fn apply(&mut self, config: Config) -> Result<ReloadSummary, ReloadError> {
        let result = self.try_apply(config);
        let label = ResultLabels {
            result: if result.is_ok() { "ok" } else { "error" },
        };
        self.metrics.config_reloads.get_or_create(&label).inc();
        result
    }

    fn try_apply(&mut self, config: Config) -> Result<ReloadSummary, ReloadError> {
        // The running allocation is the starting point, so every object keeps its address.
        let (pools, plan) = self.ipam.allocate(&config, &self.current.plan.state())?;
        let (model, _status) = GatewayModel::build(&config, &plan);
        let listeners = model.listeners().count();
        let ports = self.proxy.update(model)?;
        let old: Vec<_> = self.current.plan.vips().iter().map(|v| v.ip).collect();
        let new: Vec<_> = plan.vips().iter().map(|v| v.ip).collect();
        self.generation += 1;
        let summary = ReloadSummary {
            generation: self.generation,
            ports,
            vips_added: new.iter().filter(|ip| !old.contains(ip)).copied().collect(),
            vips_removed: old.iter().filter(|ip| !new.contains(ip)).copied().collect(),
            listeners,
        };
        if let Some(admin) = &self.admin {
            admin.publish(&config, &plan, &self.proxy.model());
        }
        self.current = Current {
            config,
            pools,
            plan,
        };
        Ok(summary)
    }

    /// Loads `paths` and applies them. Unless `force`, a configuration equal to the one
    /// served is not applied again (`Ok(None)`): file watches fire for unrelated writes too.
    pub fn reload_files(
        &mut self,
        paths: &[PathBuf],
        force: bool,
    ) -> Result<Option<ReloadSummary>, ReloadError> {
        let config = match config::load(paths) {
            Ok(config) => config,
            Err(err) => {
                self.metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                return Err(err.into());
            }
        };
        if !force && config == self.current.config {
            tracing::debug!("configuration files touched but unchanged");
            return Ok(None);
        }
        self.apply(config).map(Some)
    }
}

/// Logs the outcome of a reload: one line either way.
pub fn log_outcome(trigger: &str, outcome: &Result<Option<ReloadSummary>, ReloadError>) {
    match outcome {
        Ok(Some(s)) => tracing::info!(
            trigger,
            generation = s.generation,
            listeners = s.listeners,
            ports_added = ?s.ports.added,
            ports_removed = ?s.ports.removed,
            vips_added = ?s.vips_added,
            vips_removed = ?s.vips_removed,
            "configuration reloaded"
        ),
        Ok(None) => {}
        Err(err) => tracing::error!(
            trigger,
            "configuration rejected, the previous one keeps serving: {err}"
        ),
    }
}

/// Watches the `--config` paths and reports changes, debounced.
///
/// Each directory given is watched (not recursively, as it is read); for each file its
/// directory is watched, so that an editor's write-and-rename and a ConfigMap volume's
/// `..data` symlink swap are seen as well as writes in place. Access events (inotify
/// `IN_OPEN`, `IN_CLOSE_NOWRITE`: lbgw reading the files itself) are ignored.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
    changes: mpsc::UnboundedReceiver<()>,
    debounce: Duration,
}

impl FileWatch {
    /// Starts watching; changes within `debounce` of each other are reported once.
    pub fn start(paths: &[PathBuf], debounce: Duration) -> Result<Self, ReloadError> {
        let (tx, changes) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(
            move |result: notify::Result<notify::Event>| match result {
                Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
                Ok(_) => {
                    let _ = tx.send(());
                }
                Err(err) => tracing::warn!("configuration watch: {err}"),
            },
        )
        .map_err(|source| ReloadError::Watch {
            path: paths.first().cloned().unwrap_or_default(),
            source,
        })?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for path in paths {
            let dir = if path.is_dir() {
                path.clone()
            } else {
                match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                    _ => Path::new(".").to_owned(),
                }
            };
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| ReloadError::Watch {
                    path: dir.clone(),
                    source,
                })?;
        }
        Ok(Self {
            _watcher: watcher,
            changes,
            debounce,
        })
    }

    /// The next change: waits for an event, then for `debounce` without further events
    /// (a burst of writes is one change).
    pub async fn changed(&mut self) {
        if self.changes.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
        loop {
            match tokio::time::timeout(self.debounce, self.changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Proxy, ProxyOptions};
    use arc_swap::ArcSwap;

    const POOL: &str = "192.0.2.0/24";

    fn gateway(ports: &[u16]) -> Config {
        let listeners: String = ports
            .iter()
            .map(|p| format!("  - {{name: l{p}, port: {p}, protocol: HTTP}}\n"))
            .collect();
        let yaml = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
             metadata: {{name: gw, namespace: default}}\n\
             spec:\n  gatewayClassName: lbgw\n  listeners:\n{listeners}"
        );
        Config::from_yaml("test.yaml", &yaml).expect("valid YAML")
    }

    fn reloader(dir: &Path, lb_cidrs: Vec<String>, config: Config) -> Reloader {
        let pools = Pools::resolve(&[POOL.to_owned()], None, &config).unwrap();
        let plan = ipam::allocate(&pools, &config, &ipam::State::new(Vec::new()));
        let (model, _) = GatewayModel::build(&config, &plan);
        let opts = ProxyOptions {
            bind: Some([127, 0, 0, 1].into()),
            ephemeral_ports: true,
            ..ProxyOptions::default()
        };
        let proxy = Proxy::bind(Arc::new(ArcSwap::from_pointee(model)), &opts).unwrap();
        let handle = proxy.handle();
        // Accepting is not needed: the test looks at sockets and the model only.
        std::mem::forget(proxy);
        Reloader::new(
            IpamSource {
                lb_cidrs,
                env_lb_cidr: None,
                allocations: Allocations::StateFile(dir.join("ipam.json")),
            },
            handle,
            None,
            Arc::default(),
            Current {
                config,
                pools,
                plan,
            },
        )
    }

    #[tokio::test]
    async fn ports_are_bound_and_closed_and_vips_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = reloader(dir.path(), vec![POOL.to_owned()], gateway(&[8080]));
        let vip = r.current().plan.vips()[0].ip;
        let before = r.proxy.local_addrs();
        let summary = r.apply(gateway(&[8080, 8081])).unwrap();
        assert_eq!(summary.ports.added, vec![8081]);
        assert!(summary.ports.removed.is_empty());
        let after = r.proxy.local_addrs();
        assert_eq!(after.len(), 2);
        // The unchanged port kept its socket.
        assert_eq!(after[0], before[0]);
        let summary = r.apply(gateway(&[8081])).unwrap();
        assert_eq!(summary.ports.removed, vec![8080]);
        assert_eq!(r.proxy.model().ports.len(), 1);
        assert_eq!(
            r.current().plan.vips()[0].ip,
            vip,
            "the Gateway keeps its VIP"
        );
        assert_eq!(summary.generation, 2);
    }

    #[tokio::test]
    async fn a_rejected_configuration_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A pool that does not parse: the new configuration cannot be allocated.
        let mut r = reloader(dir.path(), vec!["not-a-cidr".to_owned()], gateway(&[8080]));
        let err = r.apply(gateway(&[8080, 8081])).unwrap_err();
        assert!(matches!(err, ReloadError::Ipam(_)), "{err}");
        assert_eq!(r.proxy.local_addrs().len(), 1);
        assert_eq!(r.proxy.model().ports.len(), 1);
        let err = r
            .reload_files(&[dir.path().join("missing.yaml")], true)
            .unwrap_err();
        assert!(err.to_string().contains("missing.yaml"), "{err}");
    }
}
