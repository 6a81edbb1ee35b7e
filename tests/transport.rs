//! The transport edge against real sockets and folders: exact HTTP requests, "not sent" vs
//! "unknown" failures (here); OAuth2 token reuse against a token server of its own and the amr
//! simulator (`transport/tokens.rs`); the file exchange's atomic writes and filing
//! (`transport/exchange.rs`).

#[path = "transport/exchange.rs"]
mod exchange;
#[path = "transport/tokens.rs"]
mod tokens;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use onething::mapping::operation::HttpRequest;
use onething::transport::{Http, SendError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A request as an axum server received it.
#[derive(Debug)]
struct Received {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

#[derive(Clone)]
struct Recorder {
    tx: mpsc::UnboundedSender<Received>,
    status: StatusCode,
}

async fn record(
    State(r): State<Recorder>,
    method: Method,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = h
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let _ = r.tx.send(Received {
        method: method.to_string(),
        target: uri.to_string(),
        headers,
        body: body.to_vec(),
    });
    (
        r.status,
        [("Retry-After", "7"), ("X-Answer", "yes")],
        "answer body",
    )
        .into_response()
}

/// An axum server recording every request and answering `status`.
async fn recording_server(status: StatusCode) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .fallback(record)
        .with_state(Recorder { tx, status });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

fn gb18030(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::GB18030.encode(text);
    assert!(!unmappable);
    bytes.into_owned()
}

#[tokio::test]
async fn request_arrives_exactly_as_rendered() {
    let (addr, mut rx) = recording_server(StatusCode::OK).await;
    let body =
        gb18030("<?xml version=\"1.0\" encoding=\"GB18030\"?><XM>张三𪚥</XM><DZ>河南省郑州市</DZ>");
    let req = HttpRequest {
        method: "PUT".into(),
        path: "/svc/Apply?op=submit&name=%E5%BC%A0%E4%B8%89".into(),
        headers: vec![
            ("Content-Type".into(), "text/xml; charset=GB18030".into()),
            ("SOAPAction".into(), "\"urn:yjs:police#Submit\"".into()),
            ("X-Sign".into(), "a1b2".into()),
            ("X-Sign".into(), "c3d4".into()),
            ("X-Timestamp".into(), "1773624930000".into()),
        ],
        body: body.clone(),
    };
    let http = Http::new();
    let base = format!("http://{addr}/prefix/");
    let answer = http.send(&base, &req, TIMEOUT).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"answer body");
    assert!(answer.headers.contains(&("x-answer".into(), "yes".into())));
    assert_eq!(answer.raw().status, 200);
    assert_eq!(answer.raw().body, b"answer body");

    let got = rx.recv().await.unwrap();
    assert_eq!(got.method, "PUT");
    assert_eq!(
        got.target,
        "/prefix/svc/Apply?op=submit&name=%E5%BC%A0%E4%B8%89"
    );
    assert_eq!(got.body, body, "body bytes unchanged");
    let (stack, own): (Vec<_>, Vec<_>) = got
        .headers
        .into_iter()
        .partition(|(k, _)| k == "host" || k == "content-length");
    let expected: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    assert_eq!(own, expected, "exactly the rendered headers, in order");
    let stack: HashMap<_, _> = stack.into_iter().collect();
    assert_eq!(stack.len(), 2, "{stack:?}");
    assert_eq!(stack["host"], addr.to_string().into_bytes());
    assert_eq!(stack["content-length"], body.len().to_string().into_bytes());

    // A GET without a body, on the same (pooled) client: still nothing added but Host.
    let get = HttpRequest {
        method: "GET".into(),
        path: "/tasks/T1".into(),
        headers: vec![("Authorization".into(), "Bearer t".into())],
        body: Vec::new(),
    };
    http.send(&format!("http://{addr}"), &get, TIMEOUT)
        .await
        .unwrap();
    let got = rx.recv().await.unwrap();
    assert_eq!(
        (got.method.as_str(), got.target.as_str()),
        ("GET", "/tasks/T1")
    );
    assert!(got.body.is_empty());
    let names: Vec<&str> = got.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["authorization", "host"]);
}

#[tokio::test]
async fn non_2xx_is_an_answer() {
    let (addr, mut rx) = recording_server(StatusCode::SERVICE_UNAVAILABLE).await;
    let req = HttpRequest {
        method: "POST".into(),
        path: "/x".into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: b"{}".to_vec(),
    };
    let answer = Http::new()
        .send(&format!("http://{addr}"), &req, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.body, b"answer body");
    assert!(answer.headers.contains(&("retry-after".into(), "7".into())));
    assert!(rx.recv().await.is_some());
}

#[tokio::test]
async fn connection_refused_is_not_sent() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let req = HttpRequest {
        method: "POST".into(),
        path: "/x".into(),
        headers: vec![],
        body: b"x".to_vec(),
    };
    let err = Http::new()
        .send(&format!("http://127.0.0.1:{port}"), &req, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::NotSent(_)), "{err:?}");
}

#[tokio::test]
async fn unusable_requests_are_not_sent() {
    let bad_header = HttpRequest {
        method: "POST".into(),
        path: "/x".into(),
        headers: vec![("Bad Name".into(), "v".into())],
        body: Vec::new(),
    };
    let err = Http::new()
        .send("http://127.0.0.1:9", &bad_header, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::NotSent(_)), "{err:?}");
    let ok = HttpRequest {
        headers: vec![],
        ..bad_header
    };
    let err = Http::new()
        .send("https://127.0.0.1:9", &ok, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::NotSent(_)), "{err:?}");
}

/// Reads one whole HTTP/1.1 request (head and `Content-Length` body) from `s`.
async fn read_request(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed before sending the request");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
    }
}

/// A raw server taking one request; `hold` decides what happens after reading it. Reports the
/// request once read.
async fn raw_server(hold: bool) -> (SocketAddr, oneshot::Receiver<Vec<u8>>, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (read_tx, read_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let req = read_request(&mut s).await;
        let _ = read_tx.send(req);
        if hold {
            // Never answers: keeps the connection open until the test is done.
            let _ = release_rx.await;
        } else {
            let _ = s.shutdown().await;
        }
        drop(s);
    });
    (addr, read_rx, release_tx)
}

#[tokio::test]
async fn silent_server_is_unknown_after_the_timeout() {
    let (addr, read, release) = raw_server(true).await;
    let req = HttpRequest {
        method: "POST".into(),
        path: "/submit".into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: br#"{"case":"C1"}"#.to_vec(),
    };
    let err = Http::new()
        .send(&format!("http://{addr}"), &req, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Unknown(_)), "{err:?}");
    let got = read.await.unwrap();
    assert!(got.ends_with(br#"{"case":"C1"}"#), "the request did arrive");
    let _ = release.send(());
}

#[tokio::test]
async fn connection_closed_after_the_request_is_unknown() {
    let (addr, read, _release) = raw_server(false).await;
    let req = HttpRequest {
        method: "POST".into(),
        path: "/submit".into(),
        headers: vec![],
        body: b"payload".to_vec(),
    };
    let err = Http::new()
        .send(&format!("http://{addr}"), &req, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Unknown(_)), "{err:?}");
    assert!(read.await.unwrap().ends_with(b"payload"));
}
