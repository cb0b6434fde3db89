//! HTTP/1.1 to backends: a keep-alive pool whose connections are driven inside the task of
//! the request using them.
//!
//! hyper's client connection is a future that does the I/O (`Connection`) plus a handle that
//! queues requests on it (`SendRequest`). The usual way runs the future as a task of its own:
//! then every request crosses two tasks and back (request → connection task → response), and
//! every response body chunk wakes the request's task from the connection's. Here a request
//! checks a connection out of the pool and polls its `Connection` itself: while it waits for
//! the response head, and then from the response body ([`PooledBody`]), which the client-facing
//! connection polls as it writes. The connection thus moves at the pace of the client that
//! reads the response (backpressure), and one wake-up of one task serves both sockets. The
//! hand-overs inside the connection (response head, body chunks, hyper's `want` signal)
//! would each wake the task that is already polling; [`SelfWake`] turns those into another
//! pass of the same poll.
//!
//! A connection goes back to the pool when its response body has been read to the end and
//! hyper is ready for the next request on it (RFC 9112 §9.3: persistence); a body dropped
//! before its end closes the connection, since the rest of the response would still be on the
//! wire. Idle connections are taken most recently used first, kept at most
//! [`IDLE_TIMEOUT`] and [`MAX_IDLE_PER_ENDPOINT`] per endpoint. Idle connections are polled by
//! no one: one the backend has closed is noticed when it is checked out, when newer ones are
//! checked in, or by the [`sweeper`] every [`SWEEP_INTERVAL`]; a request that hyper could not
//! start writing on such a connection (a close racing with the checkout) is sent again on a
//! new connection. A request already written when the backend's close or reset arrives is
//! sent again on a new connection only when it is idempotent and has no body (RFC 9110
//! §9.2.2; RFC 9112 §9.3.1: a proxy must not retry non-idempotent requests on its own) and
//! the connection had been idle for [`REPLAY_AFTER_IDLE`] (the close of a keep-alive timeout
//! cannot come sooner), once;
//! anything else fails with 502, which a route's GEP-1731 retry policy may retry. Backends that
//! close idle connections sooner than [`IDLE_TIMEOUT`] (Node.js: 5 s) make the race likelier.
//!
//! Requests that ask for a protocol upgrade (WebSocket, RFC 9110 §7.8) get a connection of
//! their own that runs as a task, since after `101 Switching Protocols` it becomes a tunnel
//! ([`super::super::upgrade`]).

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::header::UPGRADE;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{Builder, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::super::body::{self, ProxyBody};
use super::super::error::ProxyError;

/// How long an idle connection is kept.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per endpoint (per worker); beyond this the oldest is closed.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

type Io = TokioIo<TcpStream>;

/// One backend connection: the handle that sends requests and the future that does its I/O.
struct Conn {
    sender: SendRequest<ProxyBody>,
    /// `None` once it has ended (closed or failed). Dropping it at once also fails a request
    /// still queued on it, handing the request back unsent.
    driver: Option<Connection<Io, ProxyBody>>,
    /// What the connection's internals wake (see [`SelfWake`]), made once per connection.
    wake: Arc<SelfWake>,
    waker: Waker,
}

impl Conn {
    fn new(sender: SendRequest<ProxyBody>, driver: Connection<Io, ProxyBody>) -> Self {
        let wake = Arc::new(SelfWake::default());
        let waker = Waker::from(Arc::clone(&wake));
        Self {
            sender,
            driver: Some(driver),
            wake,
            waker,
        }
    }

    /// Does the connection's pending I/O; `Ready` once the connection has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = &mut self.driver else {
            return Poll::Ready(());
        };
        match Pin::new(driver).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.driver = None;
                if let Err(err) = result {
                    tracing::debug!("backend connection ended: {err}");
                }
                Poll::Ready(())
            }
        }
    }

    /// Polls `step` (which drives this connection and looks at what it produced) on behalf of
    /// the task whose context is `cx`, with [`SelfWake`] as the waker: wake-ups the connection
    /// raises during the poll itself (a response handed over, body data sent, a `want`
    /// signalled, all between the connection and the request within this one task) lead to
    /// another pass here instead of another poll of the whole client connection; wake-ups
    /// from outside (socket readiness) reach the task.
    fn poll_within<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut step: impl FnMut(&mut Self, &mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        /// Passes per poll before the task yields (hyper's dispatcher yields by waking itself
        /// after a burst of work; tokio's budget does the same).
        const MAX_PASSES: usize = 4;
        self.wake.task.register(cx.waker());
        let waker = self.waker.clone();
        let mut inner = Context::from_waker(&waker);
        for _ in 0..MAX_PASSES {
            self.wake.woken.store(false, Ordering::Relaxed);
            self.wake.polling.store(true, Ordering::SeqCst);
            let result = step(self, &mut inner);
            // Wake-ups from here on go to the task.
            self.wake.polling.store(false, Ordering::SeqCst);
            if result.is_ready() || !self.wake.woken.load(Ordering::SeqCst) {
                return result;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Whether a request can be sent on it now, without waiting: the connection is open and
    /// idle (no response still being read, no request body still being written).
    fn ready_now(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        if self.drive(&mut cx).is_ready() {
            return false;
        }
        matches!(self.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }
}

/// The waker a backend connection's internals get: while the request's task is polling the
/// connection (`polling`), a wake-up only sets `woken`; otherwise it wakes the task.
#[derive(Default)]
struct SelfWake {
    polling: AtomicBool,
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for SelfWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::SeqCst) {
            self.woken.store(true, Ordering::SeqCst);
        } else {
            self.task.wake();
        }
    }
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

type IdleMap = Mutex<foldhash::HashMap<SocketAddr, Vec<Idle>>>;

/// The idle connections of one worker, by endpoint.
#[derive(Default)]
pub(super) struct Pool {
    idle: Arc<IdleMap>,
    /// Whether the sweeper task runs (started by the first request, on the worker's runtime).
    sweeping: AtomicBool,
}

impl Pool {
    /// Sends `req` (origin-form URI, `Host` set) to `endpoint`.
    pub(super) async fn send(
        &self,
        endpoint: SocketAddr,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // A load first: the swap (a write to a shared line) happens once, not per request.
        if !self.sweeping.load(Ordering::Relaxed) && !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweeper(Arc::downgrade(&self.idle)));
        }
        if req.headers().contains_key(UPGRADE) {
            // Rare paths are boxed: their futures would otherwise grow the one every
            // request moves through its callers.
            return Box::pin(send_upgrade(endpoint, req)).await;
        }
        let mut req = req;
        loop {
            let (mut conn, fresh, idle_for) = match self.checkout(endpoint) {
                Some((conn, idle_for)) => (conn, false, idle_for),
                None => (Box::pin(connect(endpoint)).await?, true, Duration::ZERO),
            };
            // What it takes to send the request again if the backend closes this reused
            // connection under it (RFC 9110 §9.2.2: idempotent requests may be retried
            // automatically; a body would be gone). Only a connection idle long enough for a
            // backend's keep-alive timeout to run out is at risk: the copy is not made for
            // the others, which under load are nearly all.
            let again = (!fresh
                && idle_for >= REPLAY_AFTER_IDLE
                && req.method().is_idempotent()
                && req.body().is_end_stream())
            .then(|| Box::new(head_of(&req)));
            match exchange(&mut conn, req).await {
                Ok(response) => {
                    let idle = Arc::clone(&self.idle);
                    return Ok(response.map(|body| {
                        PooledBody {
                            body,
                            conn: Some(conn),
                            endpoint,
                            idle,
                        }
                        .boxed()
                    }));
                }
                Err(mut err) => match (err.take_message(), again) {
                    // Nothing was written: the pooled connection had been closed. A fresh
                    // connection that fails the same way is an answer, not a race.
                    (Some(unsent), _) if !fresh => req = unsent,
                    (None, Some(head)) if closed_under(err.error()) => {
                        tracing::debug!(%endpoint, "backend closed a reused connection under an idempotent request; sending it again on a new one");
                        req = head.map(|()| body::empty());
                    }
                    _ => {
                        return Err(ProxyError::Upstream {
                            endpoint,
                            source: err.into_error().into(),
                        });
                    }
                },
            }
        }
    }

    /// Idle connections, over every endpoint.
    #[cfg(test)]
    pub(super) fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.values().map(Vec::len).sum()
    }

    /// What the sweeper does, as if at `now`.
    #[cfg(test)]
    pub(super) fn sweep_at(&self, now: Instant) {
        sweep(&self.idle, now);
    }

    /// The most recently used idle connection to `endpoint` that can take a request now.
    /// With it, how long it has been idle.
    fn checkout(&self, endpoint: SocketAddr) -> Option<(Box<Conn>, Duration)> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&endpoint)?;
        while let Some(Idle { mut conn, since }) = list.pop() {
            let idle_for = since.elapsed();
            if idle_for < IDLE_TIMEOUT && conn.ready_now() {
                return Some((conn, idle_for));
            }
        }
        None
    }
}

/// How long a connection must have been idle for a request on it to be sent again if the
/// backend closes it under the request. Backends close idle connections after their
/// keep-alive timeout, which is 1 s or more in common servers (Node.js and uvicorn 5 s,
/// gunicorn 2 s, nginx 75 s); a connection reused sooner cannot meet that close.
pub(super) const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How often idle connections are swept without waiting for a request to their endpoint.
const SWEEP_INTERVAL: Duration = Duration::from_secs(15);

/// Every [`SWEEP_INTERVAL`], closes idle connections that have expired or that their backend
/// has closed, for every endpoint: endpoints come and go with EndpointSlices, and the
/// connections to one that is no longer used would otherwise stay open (half-closed once the
/// backend gives up on them). Ends with the pool.
async fn sweeper(idle: std::sync::Weak<IdleMap>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(idle) = idle.upgrade() else {
            return;
        };
        sweep(&idle, Instant::now());
    }
}

/// Closes the idle connections that are expired at `now` or closed; forgets empty endpoints.
fn sweep(idle: &IdleMap, now: Instant) {
    let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
    idle.retain(|_, list| {
        list.retain_mut(|i| {
            now.saturating_duration_since(i.since) < IDLE_TIMEOUT && i.conn.ready_now()
        });
        !list.is_empty()
    });
}

/// Returns `conn` to the idle list of `endpoint` if it can take another request.
fn checkin(idle: &IdleMap, endpoint: SocketAddr, mut conn: Box<Conn>) {
    if !conn.ready_now() {
        return;
    }
    // An idle connection wakes no one (and keeps no finished task alive).
    drop(conn.wake.task.take());
    let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
    let list = idle.entry(endpoint).or_default();
    // Sweep from the oldest end: expired connections, and the oldest one if the backend has
    // closed it, so that connections to a busy endpoint are not held half-closed.
    loop {
        let full = list.len() >= MAX_IDLE_PER_ENDPOINT;
        let Some(oldest) = list.first_mut() else {
            break;
        };
        if full || oldest.since.elapsed() >= IDLE_TIMEOUT || !oldest.conn.ready_now() {
            list.remove(0);
        } else {
            break;
        }
    }
    list.push(Idle {
        conn,
        since: Instant::now(),
    });
}

/// A copy of `req`'s head, to send it again.
fn head_of(req: &Request<ProxyBody>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head
}

/// Whether `err` is the backend closing or resetting the connection before its response was
/// complete, the race a reused keep-alive connection can lose (RFC 9112 §9.3.1 on retrying).
fn closed_under(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() || err.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        source = cause.source();
    }
    false
}

/// A new connection to `endpoint`; boxed, since it moves between the pool and requests.
async fn connect(endpoint: SocketAddr) -> Result<Box<Conn>, ProxyError> {
    let stream = super::connect(endpoint).await?;
    let (sender, driver) = Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|err| ProxyError::Connect {
            endpoint,
            source: err.into(),
        })?;
    Ok(Box::new(Conn::new(sender, driver)))
}

/// Sends `req` on `conn` and drives the connection until the response head is in.
async fn exchange(
    conn: &mut Conn,
    req: Request<ProxyBody>,
) -> Result<Response<Incoming>, TrySendError<Request<ProxyBody>>> {
    let mut response = pin!(conn.sender.try_send_request(req));
    poll_fn(|cx| {
        conn.poll_within(cx, |conn, cx| {
            // The connection first: it writes the request and reads the response head, which
            // completes `response`; when it ends, the request fails.
            let _ = conn.drive(cx);
            response.as_mut().poll(cx)
        })
    })
    .await
}

/// An upgrade request on a connection of its own, run as a task until the tunnel takes over.
async fn send_upgrade(
    endpoint: SocketAddr,
    req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Conn {
        mut sender, driver, ..
    } = *connect(endpoint).await?;
    let Some(driver) = driver else {
        return Err(ProxyError::Connect {
            endpoint,
            source: "the connection closed at once".into(),
        });
    };
    tokio::spawn(async move {
        if let Err(err) = driver.with_upgrades().await {
            tracing::debug!(%endpoint, "backend connection (upgrade) ended: {err}");
        }
    });
    let response = sender
        .send_request(req)
        .await
        .map_err(|err| ProxyError::Upstream {
            endpoint,
            source: err.into(),
        })?;
    Ok(response.map(body::incoming))
}

/// A backend's response body that drives its connection while it is read, and returns the
/// connection to the pool at its end.
struct PooledBody {
    body: Incoming,
    /// `None` once returned to the pool or closed.
    conn: Option<Box<Conn>>,
    endpoint: SocketAddr,
    idle: Arc<IdleMap>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            checkin(&self.idle, self.endpoint, conn);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let body = &mut this.body;
        let frame = match &mut this.conn {
            // Reads what the backend sent into `body` and takes it from there.
            Some(conn) => conn.poll_within(cx, |conn, cx| {
                let _ = conn.drive(cx);
                Pin::new(&mut *body).poll_frame(cx)
            }),
            None => Pin::new(body).poll_frame(cx),
        };
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            // An error: the connection is not reused (dropped with the body).
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body with nothing left to read (e.g. `Content-Length: 0`, a HEAD or 204
        // response) may be dropped without being polled; anything else is cut short.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
