//! The `translate` verb: a dry run that prints the exact request one item's department would
//! receive for a submission, as raw HTTP/1.1 or as an exchange-folder file.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, Utc};
use indexmap::IndexMap;
use minijinja::value::Value;

use crate::mapping::Mapping;
use crate::mapping::context::{self, Clock, RenderInput};
use crate::mapping::department::Department;
use crate::mapping::expr::to_value;
use crate::mapping::operation::{OpKind, Request};
use crate::model::time::{cst, parse_rfc3339};

/// What `translate` was asked for.
#[derive(Debug, Clone, Default)]
pub struct TranslateRequest {
    pub item: String,
    /// `submit` (default), `complete`, `query` or `withdraw`.
    pub op: Option<String>,
    pub reference: Option<String>,
    /// Results overlaid on the submission's `prior_results`.
    pub results: Option<serde_json::Value>,
    pub reason: Option<String>,
    /// RFC 3339; fixes both clocks.
    pub at: Option<String>,
    pub nonce: Option<String>,
}

/// Reads `--results FILE`.
pub fn read_results(path: &PathBuf) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    if !v.is_object() {
        return Err(format!(
            "{}: must be a JSON object {{item: {{key: value}}}}",
            path.display()
        ));
    }
    Ok(v)
}

/// Reads a `NAME=value` env file (comments and blank lines ignored), such as
/// `mappings/test-credentials.env`.
pub fn read_env_file(path: &std::path::Path) -> Result<IndexMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// A fresh random nonce: 32 hex characters.
pub fn random_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Renders the operation and returns the bytes `translate` prints.
/// `env` looks up environment variables (credentials, base URLs): the process environment for the
/// CLI, a credentials file in tests.
pub fn translate(
    m: &Mapping,
    submission: &serde_json::Value,
    req: &TranslateRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<u8>, String> {
    let errors = crate::validate::validate_submission_value(submission, m);
    if !errors.is_empty() {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        return Err(format!(
            "the submission is invalid:\n  {}",
            lines.join("\n  ")
        ));
    }
    let (_, _, item) = m
        .catalog
        .item(&req.item)
        .ok_or_else(|| format!("unknown item `{}`", req.item))?;
    if let Some(requested) = submission.get("items").and_then(|i| i.as_array())
        && !requested
            .iter()
            .any(|i| i.as_str() == Some(req.item.as_str()))
    {
        return Err(format!(
            "item `{}` is not requested by this submission",
            req.item
        ));
    }
    let dept = m
        .department_of(&req.item)
        .ok_or_else(|| format!("item `{}` has no department mapping", req.item))?;
    let ops = &dept.items[&req.item];

    // Prerequisite results: prior_results, overlaid by --results.
    let mut results: IndexMap<String, serde_json::Value> = IndexMap::new();
    for source in [submission.get("prior_results"), req.results.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Some(obj) = source.as_object() {
            for (k, v) in obj {
                results.insert(k.clone(), v.clone());
            }
        }
    }
    let prerequisites_known = item
        .prerequisites
        .iter()
        .all(|p| results.contains_key(p.get_ref()));

    let kind = match req.op.as_deref().unwrap_or("submit") {
        "submit" if item.prereview && !prerequisites_known => OpKind::Prereview,
        "submit" => OpKind::Submit,
        "complete" => OpKind::Complete,
        "query" => OpKind::Query,
        "withdraw" => OpKind::Withdraw,
        other => {
            return Err(format!(
                "unknown operation `{other}` (submit, complete, query, withdraw)"
            ));
        }
    };
    let op = ops.get(kind).ok_or_else(|| {
        format!(
            "department `{}` has no `{}` operation for item `{}`",
            dept.id,
            kind.as_str(),
            req.item
        )
    })?;
    if op.needs_ref && req.reference.is_none() {
        return Err(format!(
            "the `{}` operation of `{}` needs the department's reference: give --ref",
            kind.as_str(),
            dept.id
        ));
    }
    let creds = dept
        .credentials(env)
        .map_err(|missing| Department::missing_message(&missing))?;
    let clock = match &req.at {
        Some(at) => {
            let t = parse_rfc3339(at).ok_or_else(|| format!("--at `{at}` is not RFC 3339"))?;
            Clock {
                now: t,
                real_now: t,
            }
        }
        None => {
            let t: DateTime<FixedOffset> = Utc::now().with_timezone(&cst());
            Clock {
                now: t,
                real_now: t,
            }
        }
    };
    let nonce = req.nonce.clone().unwrap_or_else(random_nonce);
    let reason = req
        .reason
        .clone()
        .unwrap_or_else(|| "申请人主动撤回".to_string());
    let ctx = context::build(RenderInput {
        case: to_value(submission),
        item: &req.item,
        results: to_value(&results),
        reference: req.reference.as_deref(),
        refs: req.reference.clone().map(|r| vec![r]),
        reason: Some(&reason),
        clock,
        nonce: &nonce,
        token: dept.oauth2.as_ref().map(|_| "<token>"),
        env: Value::from_pairs(creds),
        codes: m.codes_value.clone(),
    });
    match op.render(ctx)? {
        Request::Http(h) => {
            let base = dept
                .resolved_base_url(env)
                .ok_or_else(|| format!("department `{}` has no base URL", dept.id))?;
            h.to_wire(&base)
        }
        Request::File(f) => {
            let outbox = dept
                .exchange
                .as_ref()
                .map(|x| x.outbox.as_str())
                .unwrap_or("outbox");
            let mut out =
                format!("FILE {}/{}\n\n", outbox.trim_end_matches('/'), f.path).into_bytes();
            out.extend_from_slice(&f.bytes);
            Ok(out)
        }
    }
}
