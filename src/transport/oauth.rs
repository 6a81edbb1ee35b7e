//! OAuth2 client credentials for department systems: a token is fetched once per department and
//! reused until it expires (in real time, never the drill clock) or a 401 invalidates it;
//! concurrent callers wait for one fetch and share its result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minijinja::value::Value;

use super::http::Http;
use crate::codec::form;
use crate::mapping::answer::Outcome;
use crate::mapping::department::Department;
use crate::mapping::expr::{Scope, scalar_string};
use crate::mapping::operation::HttpRequest;
use crate::mapping::template::Out;
use crate::model::time::{cst, rfc3339};

/// The token cache of every department (cheap to clone; clones share the cache).
#[derive(Clone)]
pub struct Tokens {
    http: Http,
    entries: Arc<Mutex<HashMap<String, Arc<Entry>>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").finish_non_exhaustive()
    }
}

/// One department's token and the lock that makes its fetches one at a time.
#[derive(Default)]
struct Entry {
    state: Mutex<State>,
    fetch: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// Fetches finished so far: a caller that waited while one finished shares its result.
    fetches: u64,
    /// The result of the last fetch (cleared by `invalidate`).
    last: Option<Result<String, String>>,
}

struct Cached {
    token: String,
    /// `None`: the answer gave no `expires_in`; valid until invalidated.
    until: Option<Instant>,
}

impl State {
    fn valid(&self) -> Option<String> {
        let c = self.token.as_ref()?;
        match c.until {
            Some(until) if Instant::now() >= until => None,
            _ => Some(c.token.clone()),
        }
    }
}

/// How long a token announced to live `expires_in` is used: minus a margin of 10 % or 10 s,
/// whichever is less.
pub fn usable_for(expires_in: Duration) -> Duration {
    let margin = (expires_in / 10).min(Duration::from_secs(10));
    expires_in - margin
}

impl Tokens {
    pub fn new(http: Http) -> Tokens {
        Tokens {
            http,
            entries: Arc::default(),
        }
    }

    fn entry(&self, dept_id: &str) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.entry(dept_id.to_string()).or_default().clone()
    }

    /// A valid token for the department: cached until it expires or until `invalidate`; concurrent
    /// callers share one fetch. `env` is the department's credentials (the form template's `env`);
    /// `timeout` bounds the token request.
    pub async fn get(
        &self,
        dept: &Department,
        base_url: &str,
        env: &Value,
        timeout: Duration,
    ) -> Result<String, String> {
        let entry = self.entry(&dept.id);
        let seen = {
            let s = lock(&entry.state);
            if let Some(t) = s.valid() {
                return Ok(t);
            }
            s.fetches
        };
        let _fetching = entry.fetch.lock().await;
        {
            let s = lock(&entry.state);
            if let Some(t) = s.valid() {
                return Ok(t);
            }
            if s.fetches != seen
                && let Some(last) = &s.last
            {
                return last.clone();
            }
        }
        let started = Instant::now();
        let result = self.fetch(dept, base_url, env, timeout).await;
        let mut s = lock(&entry.state);
        s.fetches += 1;
        match result {
            Ok((token, expires_in)) => {
                tracing::debug!(dept = %dept.id, ?expires_in, "OAuth2 token fetched");
                s.token = Some(Cached {
                    token: token.clone(),
                    until: expires_in.map(|e| started + usable_for(e)),
                });
                s.last = Some(Ok(token.clone()));
                Ok(token)
            }
            Err(e) => {
                tracing::warn!(dept = %dept.id, error = %e, "OAuth2 token request failed");
                s.token = None;
                s.last = Some(Err(e.clone()));
                Err(e)
            }
        }
    }

    /// After a 401: the next `get` fetches a new token.
    pub fn invalidate(&self, dept_id: &str) {
        let entry = self.entry(dept_id);
        let mut s = lock(&entry.state);
        s.token = None;
        s.last = None;
    }

    /// Requests a token: the form rendered from `oauth2.form`, POSTed to `token_path`.
    async fn fetch(
        &self,
        dept: &Department,
        base_url: &str,
        env: &Value,
        timeout: Duration,
    ) -> Result<(String, Option<Duration>), String> {
        let oauth = dept.oauth2.as_ref().ok_or_else(|| {
            format!(
                "{}: department `{}` has no [oauth2] section",
                dept.file, dept.id
            )
        })?;
        let real_now = chrono::Utc::now().with_timezone(&cst());
        let ctx = Scope::new(None)
            .with("env", env.clone())
            .with("now", Value::from(rfc3339(real_now)))
            .with("real_now", Value::from(rfc3339(real_now)))
            .with("real_now_ms", Value::from(real_now.timestamp_millis()))
            .with(
                "nonce",
                Value::from(hex::encode(rand::random::<[u8; 16]>())),
            )
            .into_value();
        let out = oauth.form.render(&ctx)?.unwrap_or(Out::Obj(Vec::new()));
        let body = form::write(&out).map_err(|e| format!("{}: oauth2.form: {e}", dept.file))?;
        let req = HttpRequest {
            method: "POST".into(),
            path: oauth.token_path.clone(),
            headers: vec![(
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: body.into_bytes(),
        };
        let at = format!("token request to {base_url}{}", oauth.token_path);
        let answer = self
            .http
            .send(base_url, &req, timeout)
            .await
            .map_err(|e| format!("{at}: {e}"))?;
        let read = oauth.answer.read(&answer.raw());
        match &read.outcome {
            Outcome::Ok { .. } | Outcome::Duplicate { .. } => {}
            Outcome::Unrecognised { .. } if (200..300).contains(&answer.status) => {}
            Outcome::Retry { error, .. }
            | Outcome::Permanent { error }
            | Outcome::Unrecognised { error } => return Err(format!("{at}: {error}")),
            other => {
                return Err(format!(
                    "{at}: HTTP {} read as {other:?}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ));
            }
        }
        let headers = Value::from_pairs(
            answer
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>(),
        );
        let scope = Scope::new(None)
            .with("status", Value::from(answer.status))
            .with("headers", headers)
            .with("answer", read.parsed)
            .into_value();
        let token = oauth
            .token
            .eval_opt_string(&scope)?
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("{at}: the answer has no token (`{}`)", oauth.token.source))?;
        let expires_in = match scalar_string(&oauth.expires_in.eval(&scope)?) {
            None => None,
            Some(s) => {
                let secs = s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| format!("{at}: expires_in `{s}` is not a number of seconds"))?;
                Some(Duration::from_secs_f64(secs.clamp(0.0, 1e9)))
            }
        };
        Ok((token, expires_in))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
