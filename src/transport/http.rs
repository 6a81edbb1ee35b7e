//! HTTP to the department systems: one pooled HTTP/1.1 client that sends a rendered request exactly
//! as rendered (its method, path, headers and body bytes; the stack adds only `Host` and
//! `Content-Length`), and tells a request that certainly never arrived from one whose fate is
//! unknown.
//!
//! Built on hyper directly rather than reqwest: reqwest always adds `Accept: */*` to a request that
//! has none, and a request must reach the department byte for byte as `translate` shows it. Header
//! names go out in lower case (HTTP/1.1 header names are case-insensitive; hyper cannot keep the
//! mapping's spelling).

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::mapping::answer::RawAnswer;
use crate::mapping::operation::{HttpRequest, split_base};

/// Idle pooled connections are closed after this long (departments' servers often close at 60 s).
const POOL_IDLE: Duration = Duration::from_secs(30);
/// At most this many idle connections are kept per department system.
const POOL_MAX_IDLE_PER_HOST: usize = 16;
/// A TCP connect that takes longer than this fails as not sent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A larger answer body is refused (the answer is then unknown).
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// An answer as received (header names lower-case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The answer as the mapping's answer readers take it.
    pub fn raw(&self) -> RawAnswer<'_> {
        RawAnswer {
            status: self.status,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

/// Why a request got no answer. `NotSent`: certainly not delivered (connection refused, DNS, an
/// unusable request) — safe to push again. `Unknown`: may have arrived (timeout, or the connection
/// dropped after the request was written) — resolve it with a query before pushing again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    NotSent(String),
    Unknown(String),
}

impl SendError {
    /// The message, whichever the kind.
    pub fn message(&self) -> &str {
        match self {
            SendError::NotSent(m) | SendError::Unknown(m) => m,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NotSent(m) => write!(f, "not sent: {m}"),
            SendError::Unknown(m) => write!(f, "outcome unknown: {m}"),
        }
    }
}

impl std::error::Error for SendError {}

/// The shared HTTP client (cheap to clone; clones share the connection pool).
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").finish_non_exhaustive()
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    /// A pooled HTTP/1.1 client; no proxy (none is read from the environment), plain HTTP only.
    pub fn new() -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Http { client }
    }

    /// Sends `req` to `base_url` + its path with exactly its headers and body, with `timeout` for
    /// the whole exchange (connect, send, answer head and body). Any HTTP status is an answer.
    pub async fn send(
        &self,
        base_url: &str,
        req: &HttpRequest,
        timeout: Duration,
    ) -> Result<Answer, SendError> {
        let request = build(base_url, req).map_err(SendError::NotSent)?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let msg = chain(&e);
                if e.is_connect() {
                    SendError::NotSent(msg)
                } else {
                    SendError::Unknown(msg)
                }
            })?;
            let (head, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| SendError::Unknown(format!("reading the answer: {}", chain(&*e))))?
                .to_bytes();
            let headers = head
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            Ok(Answer {
                status: head.status.as_u16(),
                headers,
                body: body.to_vec(),
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Unknown(format!(
                "no complete answer within {timeout:?}"
            ))),
        }
    }
}

/// The hyper request for `req` below `base_url`.
fn build(base_url: &str, req: &HttpRequest) -> Result<hyper::Request<Full<Bytes>>, String> {
    if base_url.starts_with("https://") {
        return Err(format!(
            "{base_url}: HTTPS is not supported (put a TLS proxy in front)"
        ));
    }
    let (host, base_path) = split_base(base_url)?;
    let uri = format!("http://{host}{base_path}{}", req.path);
    let uri: hyper::Uri = uri
        .parse()
        .map_err(|e| format!("URL `{uri}` is not valid: {e}"))?;
    let method = hyper::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", req.method))?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::copy_from_slice(&req.body)))
        .map_err(|e| e.to_string())?;
    let headers = request.headers_mut();
    for (k, v) in &req.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("`{k}` is not a valid header name"))?;
        let value = HeaderValue::from_bytes(v.as_bytes())
            .map_err(|_| format!("header `{k}`: value `{v}` is not valid in a header"))?;
        headers.append(name, value);
    }
    Ok(request)
}

/// An error with its causes, `outer: inner: innermost`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !msg.ends_with(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cur = s.source();
    }
    msg
}
