//! Streaming through the proxy: server-sent events chunk by chunk, cancellation when the
//! client goes away, WebSocket upgrades, and load with h2load.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use lbgw_tests::proxy::{Backend, TestBody, TestProxy, client, empty, gateway, service};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const GW: &str = "{name: http, port: 8080, protocol: HTTP}";

fn yaml(backend: std::net::SocketAddr) -> String {
    [
        gateway("gw", &[GW]),
        service("app", &[backend], None),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {name: r, namespace: default}\n\
         spec:\n  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: app, port: 80}]\n"
            .to_owned(),
    ]
    .join("\n---\n")
}

/// A streaming body fed by the returned sender.
fn channel_body() -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(chunk)),
            rx,
        ))
    });
    (tx, BodyExt::boxed(StreamBody::new(stream)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_chunks_reach_the_client_before_the_stream_ends() {
    // The backend sends event 1, then waits until the test has seen it before sending
    // event 2 and ending: buffering anywhere in the proxy would deadlock the test.
    let (seen_tx, seen_rx) = oneshot::channel::<()>();
    let seen_rx = Arc::new(Mutex::new(Some(seen_rx)));
    let backend = Backend::start(move |_| {
        let seen_rx = seen_rx.lock().unwrap().take();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"data: 1\n\n")).await;
                if let Some(rx) = seen_rx {
                    let _ = rx.await;
                }
                let _ = tx.send(Bytes::from_static(b"data: 2\n\n")).await;
            });
            let mut r = Response::new(body);
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
    })
    .await;
    let proxy = TestProxy::start(&yaml(backend.addr));
    let req = Request::get(format!("http://{}/events", proxy.addr(8080)))
        .body(empty())
        .unwrap();
    // A proxy that buffered the response would never answer: the backend holds the
    // stream open until the test has seen event 1.
    let response = tokio::time::timeout(Duration::from_secs(5), client().request(req))
        .await
        .expect("response head within 5 s while the backend still holds the stream open")
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first event within 5 s while the backend still holds the stream open")
        .expect("a frame")
        .expect("no error");
    assert_eq!(first.into_data().unwrap(), "data: 1\n\n");
    seen_tx.send(()).unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("end of stream")
        .expect("body")
        .to_bytes();
    assert_eq!(rest, "data: 2\n\n");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_upstream_stream() {
    let (closed_tx, closed_rx) = oneshot::channel::<()>();
    let closed_tx = Arc::new(Mutex::new(Some(closed_tx)));
    let backend = Backend::start(move |_| {
        let closed_tx = closed_tx.lock().unwrap().take();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"data: hello\n\n")).await;
                // Resolves when hyper drops the response body, i.e. when the proxy
                // closed its upstream request.
                tx.closed().await;
                if let Some(closed) = closed_tx {
                    let _ = closed.send(());
                }
            });
            Response::new(body)
        }
    })
    .await;
    let proxy = TestProxy::start(&yaml(backend.addr));
    let req = Request::get(format!("http://{}/events", proxy.addr(8080)))
        .body(empty())
        .unwrap();
    let client = client();
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .expect("response within 5 s")
        .expect("response");
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first frame within 5 s")
        .expect("frame")
        .expect("data");
    assert_eq!(first.into_data().unwrap(), "data: hello\n\n");
    drop(body);
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), closed_rx)
        .await
        .expect("the backend stream was not cancelled within 5 s of the client leaving")
        .expect("signal");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream)
            .await
            .expect("handshake");
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                ws.send(msg).await.unwrap();
            } else if msg.is_close() {
                break;
            }
        }
    });
    let proxy = TestProxy::start(&yaml(backend_addr));
    let url = format!("ws://{}/chat", proxy.addr(8080));
    let (mut ws, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("handshake within 5 s")
    .expect("handshake");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through lbgw"] {
        tokio::time::timeout(Duration::from_secs(5), ws.send(Message::text(text)))
            .await
            .expect("send within 5 s")
            .unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo within 5 s")
            .expect("a message")
            .expect("no error");
        assert_eq!(echo, Message::text(text));
    }
    tokio::time::timeout(Duration::from_secs(5), ws.close(None))
        .await
        .expect("close within 5 s")
        .unwrap();
    server.abort();
    proxy.stop().await;
}

/// Runs h2load and returns its output; asserts it exited successfully.
async fn h2load(args: &[&str]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("h2load").args(args).output(),
    )
    .await
    .expect("h2load within 60 s")
    .expect("h2load (Debian package nghttp2-client) must be installed");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "h2load {args:?}: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_hundreds_of_requests_all_succeed() {
    let backend = Backend::echo("app").await;
    let proxy = TestProxy::start(&yaml(backend.addr));
    let url = format!("http://{}/", proxy.addr(8080));
    // h2c with prior knowledge, then HTTP/1.1.
    for extra in [&[][..], &["--h1"][..]] {
        let mut args = vec!["-n", "400", "-c", "4", "-m", "4"];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = h2load(&args).await;
        assert!(
            out.contains("requests: 400 total, 400 started, 400 done, 400 succeeded"),
            "{out}"
        );
        assert!(out.contains("status codes: 400 2xx"), "{out}");
    }
    assert_eq!(backend.seen().len(), 800);
    proxy.stop().await;
}
