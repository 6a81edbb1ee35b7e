//! One request/answer exchange with a department: limits, OAuth2 token (a refused token is
//! fetched again and the call repeated once), rendering, sending, reading the answer, metrics and
//! audit. Retries and state changes are the callers' business.

use std::time::Instant;

use minijinja::value::Value;
use serde_json::json;

use super::gateway::{Config, Gateway};
use super::render::{Extras, render};
use crate::engine::Case;
use crate::mapping::answer::{Outcome, ReadAnswer};
use crate::mapping::department::Department;
use crate::mapping::operation::{Operation, Request};
use crate::store::AuditRecord;
use crate::transport::SendError;

/// How an exchange ended.
pub enum Sent {
    Answered(ReadAnswer),
    /// Certainly not delivered.
    NotSent(String),
    /// May have been delivered.
    Unknown(String),
    /// The mapping could not render the request (a missing result, say): permanent.
    RenderFailed(String),
    /// A file written to the exchange folder (its name).
    Filed(String),
}

fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Ok { .. } => "ok",
        Outcome::Duplicate { .. } => "duplicate",
        Outcome::Retry { .. } => "retry",
        Outcome::Permanent { .. } => "permanent",
        Outcome::NotFound => "not_found",
        Outcome::Finished => "finished",
        Outcome::Unauthorized => "unauthorized",
        Outcome::Unrecognised { .. } => "unrecognised",
    }
}

/// Sends `op` for `item`; the audit records of the exchange are appended to `audit`.
#[allow(clippy::too_many_arguments)]
pub async fn exchange(
    gw: &Gateway,
    cfg: &Config,
    dept: &Department,
    op: &Operation,
    case: &Case,
    submission: &Value,
    item: &str,
    x: Extras<'_>,
    poll: bool,
    audit: &mut Vec<AuditRecord>,
) -> Sent {
    let now = || gw.clock.now_ms();
    let _permit = match x.permitted {
        true => None,
        false => cfg.permit(&dept.id, poll).await,
    };
    let base = cfg.endpoint(&dept.id).unwrap_or_default().to_string();
    let env = cfg.credentials_of(&dept.id);
    let reason = x.reason;
    let refs = x.refs;
    for attempt in 0..2 {
        let token = match &dept.oauth2 {
            Some(_) => match gw.tokens.get(dept, &base, &env, dept.limits.timeout).await {
                Ok(t) => Some(t),
                Err(e) => return Sent::NotSent(format!("token: {e}")),
            },
            None => None,
        };
        let req = match render(
            gw,
            cfg,
            dept,
            op,
            case,
            submission,
            item,
            Extras {
                reason,
                refs: refs.clone(),
                token: token.as_deref(),
                ..Default::default()
            },
        ) {
            Ok(r) => r,
            Err(e) => {
                audit.push(AuditRecord::new(
                    &case.case_id,
                    Some(item),
                    Some(&dept.id),
                    now(),
                    "push",
                    format!("{}: cannot render: {e}", op.kind.as_str()),
                    None,
                ));
                return Sent::RenderFailed(e);
            }
        };
        let http = match req {
            Request::File(f) => {
                let dir = std::path::Path::new(cfg.endpoint(&dept.id).unwrap_or("."));
                let outbox = dept
                    .exchange
                    .as_ref()
                    .map(|x| dir.join(&x.outbox))
                    .unwrap_or(dir.to_path_buf());
                let _ = std::fs::create_dir_all(&outbox);
                return match crate::transport::folder::write_atomic(&outbox, &f.path, &f.bytes) {
                    Ok(()) => {
                        audit.push(AuditRecord::new(
                            &case.case_id,
                            Some(item),
                            Some(&dept.id),
                            now(),
                            "file",
                            format!("{}: wrote {}", op.kind.as_str(), f.path),
                            Some(&f.bytes),
                        ));
                        gw.metrics.push(&dept.id, "filed", 0.0);
                        Sent::Filed(f.path)
                    }
                    Err(e) => Sent::NotSent(format!("cannot write {}: {e}", f.path)),
                };
            }
            Request::Http(h) => h,
        };
        let started = Instant::now();
        let sent = gw.http.send(&base, &http, dept.limits.timeout).await;
        let secs = started.elapsed().as_secs_f64();
        audit.push(AuditRecord::new(
            &case.case_id,
            Some(item),
            Some(&dept.id),
            now(),
            if poll { "poll" } else { "push" },
            format!("{} {} {}", op.kind.as_str(), http.method, http.path),
            Some(&http.body),
        ));
        match sent {
            Ok(answer) => {
                let read = op.answer.read(&answer.raw());
                gw.metrics
                    .push(&dept.id, outcome_label(&read.outcome), secs);
                audit.push(AuditRecord::new(
                    &case.case_id,
                    Some(item),
                    Some(&dept.id),
                    now(),
                    "answer",
                    format!(
                        "HTTP {} → {}",
                        answer.status,
                        json!(outcome_label(&read.outcome)).as_str().unwrap_or("")
                    ),
                    Some(&answer.body),
                ));
                if read.outcome == Outcome::Unauthorized && attempt == 0 && dept.oauth2.is_some() {
                    gw.tokens.invalidate(&dept.id);
                    continue;
                }
                return Sent::Answered(read);
            }
            Err(SendError::NotSent(e)) => {
                gw.metrics.push(&dept.id, "not_sent", secs);
                audit.push(AuditRecord::new(
                    &case.case_id,
                    Some(item),
                    Some(&dept.id),
                    now(),
                    "answer",
                    format!("not sent: {e}"),
                    None,
                ));
                return Sent::NotSent(e);
            }
            Err(SendError::Unknown(e)) => {
                gw.metrics.push(&dept.id, "unknown", secs);
                audit.push(AuditRecord::new(
                    &case.case_id,
                    Some(item),
                    Some(&dept.id),
                    now(),
                    "answer",
                    format!("outcome unknown: {e}"),
                    None,
                ));
                return Sent::Unknown(e);
            }
        }
    }
    Sent::Answered(ReadAnswer {
        outcome: Outcome::Unauthorized,
        parsed: Value::UNDEFINED,
    })
}
