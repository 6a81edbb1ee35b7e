//! Test kit for the simulators: all ten on free ports with their own exchange folder, a stand-in
//! gateway that records callbacks, and requests rendered by `translate` with the real clock.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use indexmap::IndexMap;
use onething::sim::behaviour::Timing;
use onething::sim::callback::CallbackSettings;
use onething::sim::{SimConfig, SimHandle};
use onething::translate::{TranslateRequest, translate};
use tokio::sync::{Mutex, mpsc};

use crate::support::{CREDENTIALS, MAPPING, fixture, root, split_http};

/// A callback as the stand-in gateway received it.
#[derive(Debug, Clone)]
pub struct Callback {
    pub dept: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The answer each connected department documents for "stored".
fn stored_answer(dept: &str) -> &'static str {
    match dept {
        "health" => r#"{"code": "0"}"#,
        "amr" => r#"{"success": true}"#,
        _ => r#"{"code": 0}"#,
    }
}

#[derive(Clone)]
struct Gateway {
    tx: mpsc::UnboundedSender<Callback>,
    refuse: Arc<AtomicBool>,
}

async fn receive(
    State(g): State<Gateway>,
    Path(dept): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let headers = h
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let _ = g.tx.send(Callback {
        dept: dept.clone(),
        headers,
        body: body.to_vec(),
    });
    if g.refuse.load(Ordering::SeqCst) {
        (StatusCode::INTERNAL_SERVER_ERROR, "not now".to_string())
    } else {
        (StatusCode::OK, stored_answer(&dept).to_string())
    }
}

impl Callback {
    /// Read with the gateway's own mapping: verified, one record, turned into a report.
    pub fn report(&self) -> onething::mapping::report::StatusReport {
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        crate::support::callback_report(&self.dept, &headers, &self.body)
    }
}

pub struct Kit {
    pub sim: SimHandle,
    pub nr_dir: PathBuf,
    pub callbacks: Mutex<mpsc::UnboundedReceiver<Callback>>,
    /// While true, the stand-in gateway answers callbacks with HTTP 500.
    pub refuse_callbacks: Arc<AtomicBool>,
    pub http: reqwest::Client,
}

impl Kit {
    /// Starts everything with immediate timing (steps happen at once) and fast callback repeats.
    pub async fn start(name: &str) -> Kit {
        Self::start_with(
            name,
            Timing {
                accept_after: Duration::ZERO,
                decide_after: Duration::ZERO,
            },
        )
        .await
    }

    pub async fn start_with(name: &str, timing: Timing) -> Kit {
        let (tx, rx) = mpsc::unbounded_channel();
        let refuse = Arc::new(AtomicBool::new(false));
        let gw = Gateway {
            tx,
            refuse: refuse.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gw_addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/callbacks/{dept}", post(receive))
            .with_state(gw);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let nr_dir =
            std::env::temp_dir().join(format!("onething-sim-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&nr_dir);
        let mut addrs = IndexMap::new();
        for (id, _) in onething::sim::HTTP_SYSTEMS {
            addrs.insert(*id, SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        let cfg = SimConfig {
            addrs,
            nr_dir: nr_dir.clone(),
            credentials: CREDENTIALS.clone(),
            timing,
            callbacks: CallbackSettings {
                gateway: format!("http://{gw_addr}"),
                interval: Duration::from_millis(20),
                repeats: 5,
            },
            gas_delay_max: Duration::from_millis(50),
            nr_scan: Duration::from_millis(20),
            documented_limits: true,
        };
        let sim = onething::sim::start(cfg).await.unwrap();
        Kit {
            sim,
            nr_dir,
            callbacks: Mutex::new(rx),
            refuse_callbacks: refuse,
            http: reqwest::Client::new(),
        }
    }

    /// Environment lookups for `translate`: the test credentials, base URLs pointing here.
    fn env(&self, key: &str) -> Option<String> {
        if let Some(id) = key
            .strip_prefix("ONETHING_DEPT_")
            .and_then(|k| k.strip_suffix("_URL"))
        {
            let id = id.to_ascii_lowercase();
            if self.sim.addrs.contains_key(id.as_str()) {
                return Some(self.sim.url(&id));
            }
        }
        if key == "ONETHING_DEPT_NR_DIR" {
            return Some(self.nr_dir.display().to_string());
        }
        CREDENTIALS.get(key).cloned()
    }

    /// Renders an operation with the real clock and a fresh nonce (as the daemon would).
    pub fn render(
        &self,
        fixture_name: &str,
        item: &str,
        op: &str,
        reference: Option<&str>,
        results: Option<&str>,
    ) -> Vec<u8> {
        self.render_value(&fixture(fixture_name), item, op, reference, results)
    }

    pub fn render_value(
        &self,
        submission: &serde_json::Value,
        item: &str,
        op: &str,
        reference: Option<&str>,
        results: Option<&str>,
    ) -> Vec<u8> {
        let results = results.map(|r| {
            let p = root().join("fixtures/results").join(r);
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
        });
        let req = TranslateRequest {
            item: item.to_string(),
            op: Some(op.to_string()),
            reference: reference.map(str::to_string),
            results,
            reason: None,
            at: None,
            nonce: None,
        };
        translate(&MAPPING, submission, &req, &|k| self.env(k))
            .unwrap_or_else(|e| panic!("{item} {op}: {e}"))
    }

    /// Sends a raw HTTP/1.1 request (as `translate` prints it) to the system it names.
    pub async fn send(&self, raw: &[u8]) -> Answer {
        let (line, headers, body) = split_http(raw);
        let mut parts = line.split(' ');
        let method = parts.next().unwrap().to_string();
        let target = parts.next().unwrap().to_string();
        let host = headers
            .iter()
            .find(|(k, _)| k == "Host")
            .map(|(_, v)| v.clone())
            .unwrap();
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("http://{host}{target}"))
            .body(body);
        for (k, v) in headers {
            if k != "Host" && k != "Content-Length" {
                req = req.header(k, v);
            }
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = resp.bytes().await.unwrap().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// The next callback, or a panic after `secs` seconds without one.
    pub async fn next_callback(&self, secs: u64) -> Callback {
        let mut rx = self.callbacks.lock().await;
        tokio::time::timeout(Duration::from_secs(secs), rx.recv())
            .await
            .expect("a callback in time")
            .expect("callback channel open")
    }

    pub async fn sim_get(&self, dept: &str, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.sim.url(dept));
        let bytes = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    pub async fn stop(self) {
        self.sim.stop().await;
        let _ = std::fs::remove_dir_all(&self.nr_dir);
    }
}

/// An answer from a simulator.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The outcome the gateway's mapping reads from this answer.
    pub fn outcome(
        &self,
        item: &str,
        op: onething::mapping::operation::OpKind,
    ) -> onething::mapping::answer::Outcome {
        let dept = MAPPING.department_of(item).unwrap();
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        dept.items[item]
            .get(op)
            .unwrap()
            .answer
            .read(&onething::mapping::answer::RawAnswer {
                status: self.status,
                headers: &headers,
                body: &self.body,
            })
            .outcome
    }
}
