//! The names a request template sees: the submission's own fields at the top level (`case_id`,
//! `applicant`, `form`, `materials`, …) plus what the gateway adds for this operation.
//!
//! | name | value |
//! | --- | --- |
//! | `item` | the item code |
//! | `results` | prerequisite results, `results['birth-cert'].licence_no` |
//! | `ref` | the department's reference (complete, query, withdraw) |
//! | `refs` | the references of a batch query |
//! | `reason` | the withdrawal reason |
//! | `now` | the gateway's clock, RFC 3339 in +08:00 (drill clock: written timestamps, file names) |
//! | `real_now`, `real_now_ms` | wall-clock time (signature timestamps), RFC 3339 and Unix ms |
//! | `nonce` | a fresh random hex nonce |
//! | `env` | the department's credentials |
//! | `token` | the OAuth2 access token |

use chrono::{DateTime, FixedOffset};
use minijinja::value::Value;

use super::expr::Scope;
use crate::model::time::rfc3339;

/// The two clocks an operation may use.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: DateTime<FixedOffset>,
    pub real_now: DateTime<FixedOffset>,
}

/// What the gateway knows for one rendering.
pub struct RenderInput<'a> {
    /// The submission as a value (convert once per case with [`case_value`]).
    pub case: Value,
    pub item: &'a str,
    /// `{item: {key: value}}`.
    pub results: Value,
    pub reference: Option<&'a str>,
    pub refs: Option<Vec<String>>,
    pub reason: Option<&'a str>,
    pub clock: Clock,
    pub nonce: &'a str,
    pub token: Option<&'a str>,
    pub env: Value,
    pub codes: Value,
}

/// The submission as an expression value.
pub fn case_value(submission: &serde_json::Value) -> Value {
    crate::mapping::expr::to_value(&submission)
}

pub fn build(input: RenderInput<'_>) -> Value {
    let mut s = Scope::new(Some(input.case))
        .with("item", Value::from(input.item))
        .with("results", input.results)
        .with("now", Value::from(rfc3339(input.clock.now)))
        .with("real_now", Value::from(rfc3339(input.clock.real_now)))
        .with(
            "real_now_ms",
            Value::from(input.clock.real_now.timestamp_millis()),
        )
        .with("nonce", Value::from(input.nonce))
        .with("env", input.env)
        .with("__codes", input.codes);
    if let Some(r) = input.reference {
        s.set("ref", Value::from(r));
    }
    if let Some(r) = input.refs {
        s.set("refs", Value::from(r));
    }
    if let Some(r) = input.reason {
        s.set("reason", Value::from(r));
    }
    if let Some(t) = input.token {
        s.set("token", Value::from(t));
    }
    s.into_value()
}
