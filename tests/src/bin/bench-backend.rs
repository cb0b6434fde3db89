//! The backend and the SSE client of `cargo xtask bench`.
//!
//! `bench-backend serve` listens on 127.0.0.1:0 (HTTP/1.1 and h2c), prints
//! `listening <addr>` on stdout and serves:
//! - `/large`: a 10 MiB body;
//! - `/sse?n=N&ms=M&phase_us=P`: a `text/event-stream` of N events M ms apart, each
//!   `data: <t> <tick>` where `<t>` is the send time in nanoseconds since the Unix epoch
//!   (CLOCK_REALTIME, which every process on the machine shares) and `<tick>` the nominal
//!   time of the tick it was sent on: P µs (default 0) after a multiple of M ms since the epoch;
//! - anything else: a 128-byte body.
//!
//! `bench-backend sse-client --addr A --host H --path P --streams S [--tls] [--spread-ms M]
//! [--direct B] [--samples FILE]` opens S streams of P at once (over TLS without certificate
//! verification: the bench's own self-signed certificate), reads every event and prints one
//! JSON line with the receive-minus-send delay percentiles. `--spread-ms M` (P's interval)
//! spreads the streams' events evenly over the interval: stream i asks for
//! `phase_us = i·M/S`, so the backend never sends the events of all streams at once. With
//! `--direct B` it opens, at the same time, S more streams of P straight to B (plain HTTP,
//! no TLS), alternating with the first ones; direct stream i asks for the same phase as
//! stream i, so each event through A has a twin sent on the same tick straight from B.
//! `--samples FILE` writes every event, one line each: `p <delay ns> <tick ns>` for a stream
//! to A, `d <delay ns> <tick ns>` for a stream to B.
//!
//! `bench-backend handshake --addr A --host H --conns C --secs D` runs C loops for D seconds,
//! each opening a new TCP connection, a full TLS 1.3 handshake (no resumption), one
//! `GET /` over HTTP/1.1 and a close, and prints one JSON line with requests/s and the
//! percentiles of the whole connect-to-response time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, Infallible>;

const SMALL: &[u8; 128] = &[b'x'; 128];
const LARGE_LEN: usize = 10 * 1024 * 1024;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn query_param(query: Option<&str>, name: &str, default: u64) -> u64 {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

fn respond(req: &Request<Incoming>, large: &Bytes) -> Response<Body> {
    match req.uri().path() {
        "/large" => Response::new(Full::new(large.clone()).boxed()),
        "/sse" => {
            let n = query_param(req.uri().query(), "n", 100);
            let ms = query_param(req.uri().query(), "ms", 10);
            let phase_us = query_param(req.uri().query(), "phase_us", 0);
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                let (mut tick, first) = aligned_interval(ms.max(1), phase_us);
                for k in 0..u128::from(n) {
                    tick.tick().await;
                    let nominal = first + k * u128::from(ms.max(1)) * 1_000_000;
                    let event = format!("data: {} {nominal}\n\n", now_ns());
                    if tx.send(Ok(Frame::data(Bytes::from(event)))).await.is_err() {
                        return;
                    }
                }
            });
            let stream = tokio_stream_from(rx);
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                // nginx buffers proxied responses unless told not to; SSE servers send this.
                .header("x-accel-buffering", "no")
                .body(StreamBody::new(stream).boxed())
                .unwrap_or_else(|_| Response::new(Empty::new().boxed()))
        }
        _ => Response::new(Full::new(Bytes::from_static(SMALL)).boxed()),
    }
}

/// A tokio interval of `ms` whose ticks fall `phase_us` µs after multiples of `ms` since the
/// Unix epoch (CLOCK_REALTIME): when a stream sends depends on the phase it asked for, not on
/// when it was opened. Also returns the first tick's nominal time (ns since the epoch), the
/// same for every stream of the same phase.
fn aligned_interval(ms: u64, phase_us: u64) -> (tokio::time::Interval, u128) {
    let period = u128::from(ms) * 1_000_000;
    let offset = u128::from(phase_us) * 1_000 % period;
    let now = now_ns();
    let wait = (offset + period - now % period) % period;
    let start = tokio::time::Instant::now() + Duration::from_nanos(wait as u64);
    (
        tokio::time::interval_at(start, Duration::from_millis(ms)),
        now + wait,
    )
}

/// An mpsc receiver as a `Stream` without pulling in tokio-stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    let large = Bytes::from(vec![b'l'; LARGE_LEN]);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let large = large.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = respond(&req, &large);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Accepts any server certificate: the client only measures timing against the bench's
/// own proxies on loopback.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct ClientArgs {
    addr: SocketAddr,
    host: String,
    path: String,
    streams: usize,
    tls: bool,
    direct: Option<SocketAddr>,
    spread_ms: Option<u64>,
    samples: Option<std::path::PathBuf>,
}

/// One stream of `path` from `addr`: the delay (ns) and nominal tick of each of its events.
async fn one_stream(
    args: Arc<ClientArgs>,
    addr: SocketAddr,
    path: String,
    tls: Option<tokio_rustls::TlsConnector>,
) -> anyhow::Result<Vec<(u64, u64)>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let req = Request::get(path)
        .header("host", &args.host)
        .header("accept", "text/event-stream")
        .body(Empty::<Bytes>::new())?;
    let response = match tls {
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from(args.host.clone())?;
            let stream = connector.connect(name, tcp).await?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            send.send_request(req).await?
        }
        None => {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            send.send_request(req).await?
        }
    };
    anyhow::ensure!(
        response.status().is_success(),
        "status {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut pending = Vec::new();
    let mut delays = Vec::new();
    while let Some(frame) = body.frame().await {
        let received = now_ns();
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let mut fields = std::str::from_utf8(&event)
                .ok()
                .and_then(|e| e.trim().strip_prefix("data: "))
                .unwrap_or_default()
                .split(' ')
                .map(|t| t.parse::<u128>().ok());
            if let Some(Some(sent)) = fields.next() {
                let tick = fields.next().flatten().unwrap_or_default();
                delays.push((
                    u64::try_from(received.saturating_sub(sent)).unwrap_or(u64::MAX),
                    u64::try_from(tick).unwrap_or_default(),
                ));
            }
        }
    }
    Ok(delays)
}

/// Handshake loops: new connection, full handshake, one request, close; until `deadline`.
async fn handshake_loop(
    addr: SocketAddr,
    host: String,
    connector: tokio_rustls::TlsConnector,
    deadline: tokio::time::Instant,
) -> (Vec<u64>, u64) {
    let mut times = Vec::new();
    let mut errors = 0;
    while tokio::time::Instant::now() < deadline {
        let start = std::time::Instant::now();
        let one = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())?;
            let stream = connector.connect(name, tcp).await?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let conn = tokio::spawn(conn);
            let req = Request::get("/")
                .header("host", &host)
                .header("connection", "close")
                .body(Empty::<Bytes>::new())?;
            let response = send.send_request(req).await?;
            anyhow::ensure!(
                response.status().is_success(),
                "status {}",
                response.status()
            );
            response.into_body().collect().await?;
            drop(send);
            let _ = conn.await;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(10), one).await {
            Ok(Ok(())) => times.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)),
            _ => errors += 1,
        }
    }
    (times, errors)
}

async fn handshake_client(
    addr: SocketAddr,
    host: String,
    conns: usize,
    secs: u64,
) -> anyhow::Result<()> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    // Every connection pays a full handshake, the server's signature included.
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            tokio::spawn(handshake_loop(
                addr,
                host.clone(),
                connector.clone(),
                deadline,
            ))
        })
        .collect();
    let mut times = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (t, e) = task.await?;
        times.extend(t);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    times.sort_unstable();
    println!(
        "{{\"requests\": {}, \"errors\": {errors}, \"rps\": {:.1}, \"p50_us\": {:.1}, \"p99_us\": {:.1}}}",
        times.len(),
        times.len() as f64 / elapsed,
        percentile(&times, 0.50) as f64 / 1000.0,
        percentile(&times, 0.99) as f64 / 1000.0,
    );
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn sse_client(args: ClientArgs) -> anyhow::Result<()> {
    let tls = args.tls.then(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                    .with_no_client_auth()
            });
        config.map(|c| tokio_rustls::TlsConnector::from(Arc::new(c)))
    });
    let tls = tls.transpose()?;
    let args = Arc::new(args);
    // Direct streams alternate with the proxied ones, so that neither set is opened (and
    // served by the backend) first.
    let path = |i: usize| match args.spread_ms {
        Some(ms) => format!(
            "{}&phase_us={}",
            args.path,
            i as u64 * ms * 1000 / args.streams as u64
        ),
        None => args.path.clone(),
    };
    let mut tasks = Vec::new();
    for i in 0..args.streams {
        tasks.push((
            true,
            tokio::spawn(one_stream(
                Arc::clone(&args),
                args.addr,
                path(i),
                tls.clone(),
            )),
        ));
        if let Some(direct) = args.direct {
            tasks.push((
                false,
                tokio::spawn(one_stream(Arc::clone(&args), direct, path(i), None)),
            ));
        }
    }
    let (mut proxied, mut direct) = (Vec::new(), Vec::new());
    let (mut errors, mut direct_errors) = (0, 0);
    for (is_proxied, task) in tasks {
        let (delays, errors) = if is_proxied {
            (&mut proxied, &mut errors)
        } else {
            (&mut direct, &mut direct_errors)
        };
        match task.await {
            Ok(Ok(d)) => delays.extend(d),
            Ok(Err(err)) => {
                eprintln!("sse-client: {err:#}");
                *errors += 1;
            }
            Err(err) => {
                eprintln!("sse-client: {err}");
                *errors += 1;
            }
        }
    }
    if let Some(path) = &args.samples {
        use std::fmt::Write as _;
        let mut text = String::with_capacity((proxied.len() + direct.len()) * 12);
        for (tag, delays) in [("p", &proxied), ("d", &direct)] {
            for (delay, tick) in delays {
                let _ = writeln!(text, "{tag} {delay} {tick}");
            }
        }
        std::fs::write(path, text)?;
    }
    let mut proxied: Vec<u64> = proxied.into_iter().map(|(d, _)| d).collect();
    let mut direct: Vec<u64> = direct.into_iter().map(|(d, _)| d).collect();
    proxied.sort_unstable();
    direct.sort_unstable();
    println!(
        "{{\"events\": {}, \"errors\": {errors}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"direct_events\": {}, \"direct_errors\": {direct_errors}, \"direct_p50_us\": {:.1}, \"direct_p99_us\": {:.1}}}",
        proxied.len(),
        percentile(&proxied, 0.50) as f64 / 1000.0,
        percentile(&proxied, 0.99) as f64 / 1000.0,
        direct.len(),
        percentile(&direct, 0.50) as f64 / 1000.0,
        percentile(&direct, 0.99) as f64 / 1000.0,
    );
    Ok(())
}

fn arg(args: &[String], name: &str) -> anyhow::Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("missing {name}"))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("serve") => runtime.block_on(serve()),
        Some("sse-client") => {
            let client = ClientArgs {
                addr: arg(&args, "--addr")?.parse()?,
                host: arg(&args, "--host")?,
                path: arg(&args, "--path")?,
                streams: arg(&args, "--streams")?.parse()?,
                tls: args.iter().any(|a| a == "--tls"),
                direct: arg(&args, "--direct").ok().map(|a| a.parse()).transpose()?,
                spread_ms: arg(&args, "--spread-ms")
                    .ok()
                    .map(|m| m.parse())
                    .transpose()?,
                samples: arg(&args, "--samples").ok().map(Into::into),
            };
            runtime.block_on(sse_client(client))
        }
        Some("handshake") => runtime.block_on(handshake_client(
            arg(&args, "--addr")?.parse()?,
            arg(&args, "--host")?,
            arg(&args, "--conns")?.parse()?,
            arg(&args, "--secs")?.parse()?,
        )),
        _ => anyhow::bail!(
            "usage: bench-backend serve | sse-client --addr A --host H --path P --streams S [--tls] \
             [--spread-ms M] [--direct B] [--samples FILE] | handshake --addr A --host H --conns C --secs D"
        ),
    }
}
