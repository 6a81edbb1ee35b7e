//! OAuth2 tokens: fetched once for concurrent callers, reused, fetched again after `invalidate`
//! and after expiry; the real amr mapping's form, against a token server of our own and the amr
//! simulator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use indexmap::IndexMap;
use minijinja::value::Value;
use onething::mapping::Mapping;
use onething::mapping::department::Department;
use onething::mapping::operation::HttpRequest;
use onething::transport::oauth::usable_for;
use onething::transport::{Http, Tokens};
use tokio::net::TcpListener;

use crate::TIMEOUT;
use crate::exchange::TempDir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static MAPPING: LazyLock<Mapping> = LazyLock::new(|| {
    Mapping::load(&root().join("mappings")).unwrap_or_else(|p| panic!("mappings invalid:\n{p}"))
});

static CREDENTIALS: LazyLock<IndexMap<String, String>> = LazyLock::new(|| {
    onething::translate::read_env_file(&root().join("mappings/test-credentials.env")).unwrap()
});

fn amr() -> &'static Department {
    &MAPPING.departments["amr"]
}

/// amr's credentials as the form template's `env`.
fn amr_env() -> Value {
    let creds = amr().credentials(&|k| CREDENTIALS.get(k).cloned()).unwrap();
    Value::from_pairs(creds.into_iter().collect::<Vec<_>>())
}

struct TokenServer {
    issued: AtomicUsize,
    expires_in: serde_json::Value,
    refuse: bool,
    /// (content type, body) of every token request.
    requests: Mutex<Vec<(String, String)>>,
}

async fn issue(State(s): State<Arc<TokenServer>>, h: HeaderMap, body: Bytes) -> Response {
    let ct = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    s.requests
        .lock()
        .unwrap()
        .push((ct, String::from_utf8_lossy(&body).into_owned()));
    if s.refuse {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let n = s.issued.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(serde_json::json!({
        "access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": s.expires_in,
    }))
    .into_response()
}

async fn token_server(expires_in: serde_json::Value, refuse: bool) -> (String, Arc<TokenServer>) {
    let state = Arc::new(TokenServer {
        issued: AtomicUsize::new(0),
        expires_in,
        refuse,
        requests: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/oauth/token", post(issue))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

#[tokio::test]
async fn token_is_fetched_once_for_concurrent_callers_and_reused() {
    let (base, server) = token_server(serde_json::json!(7200), false).await;
    let tokens = Tokens::new(Http::new());
    let env = amr_env();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (tokens, base, env) = (tokens.clone(), base.clone(), env.clone());
        set.spawn(async move { tokens.get(amr(), &base, &env, TIMEOUT).await });
    }
    while let Some(got) = set.join_next().await {
        assert_eq!(got.unwrap().unwrap(), "tok-1");
    }
    assert_eq!(
        tokens.get(amr(), &base, &env, TIMEOUT).await.unwrap(),
        "tok-1"
    );
    assert_eq!(server.issued.load(Ordering::SeqCst), 1);

    // The form rendered from the real amr mapping.
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (ct, body) = &requests[0];
    assert_eq!(ct, "application/x-www-form-urlencoded");
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        form,
        [
            pair("grant_type", "client_credentials"),
            pair("client_id", "yjs"),
            pair("client_secret", "amr-test-secret"),
        ]
    );
}

#[tokio::test]
async fn invalidate_fetches_a_new_token() {
    let (base, server) = token_server(serde_json::json!("7200"), false).await;
    let tokens = Tokens::new(Http::new());
    let env = amr_env();
    assert_eq!(
        tokens.get(amr(), &base, &env, TIMEOUT).await.unwrap(),
        "tok-1"
    );
    tokens.invalidate("amr");
    assert_eq!(
        tokens.get(amr(), &base, &env, TIMEOUT).await.unwrap(),
        "tok-2"
    );
    assert_eq!(
        tokens.get(amr(), &base, &env, TIMEOUT).await.unwrap(),
        "tok-2"
    );
    assert_eq!(server.issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn expired_token_is_fetched_again() {
    let (base, server) = token_server(serde_json::json!(0), false).await;
    let tokens = Tokens::new(Http::new());
    let env = amr_env();
    assert_eq!(
        tokens.get(amr(), &base, &env, TIMEOUT).await.unwrap(),
        "tok-1"
    );
    assert_eq!(
        tokens.get(amr(), &base, &env, TIMEOUT).await.unwrap(),
        "tok-2"
    );
    assert_eq!(server.issued.load(Ordering::SeqCst), 2);
}

#[test]
fn token_margin_is_ten_percent_or_ten_seconds() {
    assert_eq!(
        usable_for(Duration::from_secs(7200)),
        Duration::from_secs(7190)
    );
    assert_eq!(usable_for(Duration::from_secs(60)), Duration::from_secs(54));
    assert_eq!(usable_for(Duration::ZERO), Duration::ZERO);
}

#[tokio::test]
async fn refused_token_request_is_an_error_and_not_cached() {
    let (base, server) = token_server(serde_json::json!(7200), true).await;
    let tokens = Tokens::new(Http::new());
    let env = amr_env();
    let err = tokens.get(amr(), &base, &env, TIMEOUT).await.unwrap_err();
    assert!(err.contains("invalid_client"), "{err}");
    assert!(tokens.get(amr(), &base, &env, TIMEOUT).await.is_err());
    assert_eq!(server.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn amr_simulator_accepts_the_mapping_token() {
    use onething::sim::behaviour::Timing;
    use onething::sim::callback::CallbackSettings;
    let nr_dir = TempDir::new("sim");
    let mut addrs = IndexMap::new();
    for (id, _) in onething::sim::HTTP_SYSTEMS {
        addrs.insert(*id, SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    let sim = onething::sim::start(onething::sim::SimConfig {
        addrs,
        nr_dir: nr_dir.0.clone(),
        credentials: CREDENTIALS.clone(),
        timing: Timing::default(),
        callbacks: CallbackSettings {
            gateway: "http://127.0.0.1:9".into(),
            interval: Duration::from_millis(20),
            repeats: 0,
        },
        gas_delay_max: Duration::from_millis(50),
        nr_scan: Duration::from_millis(20),
        documented_limits: true,
    })
    .await
    .unwrap();
    let base = sim.url("amr");
    let http = Http::new();
    let tokens = Tokens::new(http.clone());
    let env = amr_env();
    let token = tokens.get(amr(), &base, &env, TIMEOUT).await.unwrap();
    assert!(sim.world.token_valid(&token), "{token}");
    assert_eq!(
        tokens.get(amr(), &base, &env, TIMEOUT).await.unwrap(),
        token
    );
    assert_eq!(sim.world.violations_json("amr"), serde_json::json!([]));

    // The token opens the API: an unknown task is 404, not 401.
    let query = HttpRequest {
        method: "GET".into(),
        path: "/api/v2/tasks/NO-SUCH-TASK".into(),
        headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        body: Vec::new(),
    };
    let answer = http.send(&base, &query, TIMEOUT).await.unwrap();
    assert_eq!(
        answer.status,
        404,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    sim.stop().await;
}
