//! The HTTP/1.1 pool against real backends on loopback sockets: a hyper server, and a
//! hand-written one for the behaviours hyper would not produce (closing a kept-alive
//! connection right after a response).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Upstreams;
use crate::gateway::UpstreamProtocol;
use crate::proxy::body::{self, ProxyBody};

/// Bounds every exchange: a pool bug must fail the test, not hang it.
const LIMIT: Duration = Duration::from_secs(10);

/// A hyper HTTP/1.1 backend on an ephemeral loopback port, counting the connections it
/// accepted. `/204` answers 204, `/stream` an endless chunked body, anything else `ok`.
async fn backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let response = match req.uri().path() {
                        "/204" => {
                            let mut r = http::Response::new(body::empty());
                            *r.status_mut() = StatusCode::NO_CONTENT;
                            r
                        }
                        "/stream" => {
                            let chunks = futures_util::stream::unfold(0u64, |n| async move {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                let frame = Frame::data(Bytes::from(format!("chunk {n}\n")));
                                Some((Ok::<_, hyper::Error>(frame), n + 1))
                            });
                            http::Response::new(BodyExt::boxed(StreamBody::new(chunks)))
                        }
                        _ => http::Response::new(body::full("ok")),
                    };
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn request(method: Method, path: &str) -> Request<ProxyBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(body::empty())
        .unwrap()
}

async fn get(upstreams: &Upstreams, endpoint: SocketAddr, path: &str) -> (StatusCode, Bytes) {
    get_with(upstreams, endpoint, Method::GET, path).await
}

async fn get_with(
    upstreams: &Upstreams,
    endpoint: SocketAddr,
    method: Method,
    path: &str,
) -> (StatusCode, Bytes) {
    tokio::time::timeout(LIMIT, async {
        let response = upstreams
            .send(
                endpoint,
                UpstreamProtocol::Http1,
                None,
                request(method, path),
            )
            .await
            .unwrap();
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    })
    .await
    .expect("the exchange finished in time")
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (endpoint, accepted) = backend().await;
    let upstreams = Upstreams::new();
    for _ in 0..20 {
        assert_eq!(
            get(&upstreams, endpoint, "/").await,
            (StatusCode::OK, Bytes::from("ok"))
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bodiless_responses_keep_the_connection() {
    // HEAD and 204 responses have no body to read: hyper may drop it unpolled (RFC 9110
    // §9.3.2, §15.3.5), and the connection must still go back to the pool.
    let (endpoint, accepted) = backend().await;
    let upstreams = Upstreams::new();
    for _ in 0..5 {
        let (status, body) = get(&upstreams, endpoint, "/204").await;
        assert_eq!((status, body.len()), (StatusCode::NO_CONTENT, 0));
        let (status, body) = get_with(&upstreams, endpoint, Method::HEAD, "/").await;
        assert_eq!((status, body.len()), (StatusCode::OK, 0));
        // Dropped without being read at all.
        let response = upstreams
            .send(
                endpoint,
                UpstreamProtocol::Http1,
                None,
                request(Method::GET, "/204"),
            )
            .await
            .unwrap();
        drop(response);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_requests_open_connections_that_are_reused() {
    let (endpoint, accepted) = backend().await;
    let upstreams = Upstreams::new();
    for _ in 0..3 {
        let answers =
            futures_util::future::join_all((0..8).map(|_| get(&upstreams, endpoint, "/"))).await;
        assert!(
            answers
                .iter()
                .all(|(s, b)| *s == StatusCode::OK && b == "ok")
        );
    }
    // The first round opened up to 8; later rounds found them idle.
    let opened = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=8).contains(&opened),
        "{opened} connections for 8 at a time"
    );
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_the_connection() {
    let (endpoint, accepted) = backend().await;
    let upstreams = Upstreams::new();
    let response = upstreams
        .send(
            endpoint,
            UpstreamProtocol::Http1,
            None,
            request(Method::GET, "/stream"),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(LIMIT, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "chunk 0\n");
    // The rest of the stream is still on the wire: this connection cannot carry another
    // request.
    drop(body);
    assert_eq!(
        get(&upstreams, endpoint, "/").await,
        (StatusCode::OK, Bytes::from("ok"))
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_streamed_body_is_read_as_the_reader_asks() {
    // The connection is driven only by the body's reader: frames arrive while it reads.
    let (endpoint, _) = backend().await;
    let upstreams = Upstreams::new();
    let response = upstreams
        .send(
            endpoint,
            UpstreamProtocol::Http1,
            None,
            request(Method::GET, "/stream"),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    for n in 0..20 {
        let frame = tokio::time::timeout(LIMIT, body.frame())
            .await
            .expect("the next chunk in time")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), format!("chunk {n}\n"));
    }
}

/// A backend that answers one request per connection with a keep-alive response (no
/// `Connection: close`) and then closes the connection, as a backend whose keep-alive
/// timeout has just expired does. Returns its address and the number of connections.
async fn closing_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    answering_once(Then::CloseAfter(Duration::ZERO)).await
}

/// [`closing_backend`], closing `delay` after the response.
async fn closing_backend_after(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    answering_once(Then::CloseAfter(delay)).await
}

/// What a connection of [`answering_once`] does after its one response.
#[derive(Clone, Copy)]
enum Then {
    /// Closes after this delay. Closed at once, the client learns it from the FIN with the
    /// response; closed later but before the client's next request arrives is the race a
    /// pooled connection cannot avoid (see `http1`'s module doc).
    CloseAfter(Duration),
    /// Closes when the next request (or a body's first bytes) arrives, unanswered: the
    /// backend closing an idle connection at the moment a reused one is given a request.
    CloseOnNextRequest,
}

/// A hand-written backend that answers the first request of each connection with a
/// keep-alive `200 ok` and then does `then`. Returns its address and the number of
/// connections it accepted.
async fn answering_once(then: Then) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                match then {
                    // No yield when there is no delay: the close follows the response at once.
                    Then::CloseAfter(delay) if !delay.is_zero() => {
                        tokio::time::sleep(delay).await;
                    }
                    Then::CloseAfter(_) => {}
                    Then::CloseOnNextRequest => {
                        let _ = stream.read(&mut buf).await;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_connection_the_backend_closed_is_not_used_again() {
    let (endpoint, accepted) = closing_backend().await;
    let upstreams = Upstreams::new();
    for round in 0..10 {
        // Half the rounds give the FIN time to arrive before the next checkout; the others
        // come right after the response. (The race itself, a FIN arriving between checkout
        // and the first write, cannot be produced on demand: hyper then hands the unwritten
        // request back and it goes out on a new connection.)
        if round % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            get(&upstreams, endpoint, "/").await,
            (StatusCode::OK, Bytes::from("ok")),
            "round {round}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn idle_connections_that_expire_or_close_are_swept() {
    let (open, _) = backend().await;
    let (closing, _) = closing_backend_after(Duration::from_millis(100)).await;
    let upstreams = Upstreams::new();
    get(&upstreams, open, "/").await;
    get(&upstreams, closing, "/").await;
    // Both idle; then the second backend closes its connection. No request goes to it again:
    // only the sweep notices.
    assert_eq!(upstreams.http1.idle_count(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    upstreams.http1.sweep_at(std::time::Instant::now());
    assert_eq!(upstreams.http1.idle_count(), 1, "the closed one is gone");
    upstreams
        .http1
        .sweep_at(std::time::Instant::now() + super::http1::IDLE_TIMEOUT);
    assert_eq!(upstreams.http1.idle_count(), 0, "the expired one is gone");
}

#[tokio::test]
async fn an_idempotent_request_on_a_connection_closed_under_it_goes_again() {
    let (endpoint, accepted) = answering_once(Then::CloseOnNextRequest).await;
    let upstreams = Upstreams::new();
    let idle = super::http1::REPLAY_AFTER_IDLE + Duration::from_millis(100);
    get(&upstreams, endpoint, "/").await;
    // A GET on the pooled connection, idle long enough for a keep-alive timeout, which the
    // backend closes under it: sent again on a new connection (RFC 9110 §9.2.2).
    tokio::time::sleep(idle).await;
    assert_eq!(
        get(&upstreams, endpoint, "/").await,
        (StatusCode::OK, Bytes::from("ok"))
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // A POST is not idempotent: the same close is a 502-class error, not a second send.
    tokio::time::sleep(idle).await;
    let post = Request::builder()
        .method(Method::POST)
        .uri("/")
        .body(body::full("data"))
        .unwrap();
    let err = upstreams
        .send(endpoint, UpstreamProtocol::Http1, None, post)
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::proxy::error::ProxyError::Upstream { .. }),
        "{err:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the POST went out once");
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    // A port nothing listens on: bind one, note it, close it.
    let endpoint = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = Upstreams::new()
        .send(
            endpoint,
            UpstreamProtocol::Http1,
            None,
            request(Method::GET, "/"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::proxy::error::ProxyError::Connect { .. }),
        "{err:?}"
    );
}

#[test]
fn the_per_request_future_stays_small() {
    // Every request's future is moved whole when hyper stores it (and, for HTTP/2, when the
    // stream's task is spawned), so its size is paid per request in copying. Rare paths
    // (connecting, upgrades, h2c) are boxed and the pooled connection is a `Box`; this bound
    // (2.9 KiB before, 1.7 KiB after, in a debug build) catches a regression.
    let upstreams = Upstreams::new();
    let endpoint: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let send = upstreams.send(
        endpoint,
        UpstreamProtocol::Http1,
        None,
        request(Method::GET, "/"),
    );
    let size = std::mem::size_of_val(&send);
    assert!(size <= 2048, "Upstreams::send's future is {size} bytes");
}
