//! Department status reports (callbacks, poll answers, answer files) turned into state-machine
//! inputs. Under a drill clock the time limits start at the gateway's own time of learning, so the
//! departments' reported acceptance times are not used then.

use chrono::{DateTime, FixedOffset};
use minijinja::value::Value;

use super::gateway::Gateway;
use crate::engine::{Change, Input};
use crate::mapping::department::Department;
use crate::mapping::report::{Change as Reported, StatusReport};
use crate::model::time::parse_rfc3339;

fn time(gw: &Gateway, t: &Option<String>) -> Option<DateTime<FixedOffset>> {
    if gw.clock.warp() > 1.0 {
        return None;
    }
    t.as_deref().and_then(parse_rfc3339)
}

/// The input for a report, or `None` when it asks for nothing (an `ignore` status).
pub fn input(gw: &Gateway, item: &str, r: &StatusReport) -> Option<Input> {
    let change = match &r.change {
        Reported::Dispatched => Change::Dispatched,
        Reported::Progress { stage, note } => Change::Progress {
            stage: stage.clone(),
            note: note.clone(),
        },
        Reported::Accepted { accepted_at } => Change::Accepted {
            at: time(gw, accepted_at),
        },
        Reported::Rejected { reason } => Change::Rejected {
            reason: reason.clone(),
        },
        Reported::Approved {
            results,
            accepted_at,
        } => Change::Approved {
            results: results.clone(),
            accepted_at: time(gw, accepted_at),
        },
        Reported::Denied {
            reason,
            accepted_at,
        } => Change::Denied {
            reason: reason.clone(),
            accepted_at: time(gw, accepted_at),
        },
        Reported::Withdrawn { reason } => Change::Withdrawn {
            reason: reason.clone(),
        },
        Reported::Failed { error } => Change::Failed {
            error: error.clone(),
        },
        Reported::Ignore => return None,
    };
    Some(Input::Report {
        item: item.to_string(),
        reference: r.reference.clone(),
        change,
    })
}

/// Reads records into reports, keeping those about `item` of `case_id` when given. A record that
/// cannot be read is returned as an error text (the caller audits it; nothing is half-applied).
pub fn read_all(
    dept: &Department,
    records: &[Value],
    asked: Option<(&str, &str)>,
) -> (Vec<(String, StatusReport)>, Vec<String>) {
    let Some(reader) = &dept.report else {
        return (
            Vec::new(),
            vec![format!("{} has no [report] section", dept.id)],
        );
    };
    let single = (dept.items.len() == 1)
        .then(|| dept.items.keys().next().cloned())
        .flatten();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for rec in records {
        let asked_item = asked.map(|(_, i)| i).or(single.as_deref());
        let extra: Vec<(&'static str, Value)> = asked
            .map(|(c, _)| vec![("case_id", Value::from(c))])
            .unwrap_or_default();
        match reader.read(rec, asked_item, &extra) {
            Ok(r) => {
                let item = r.item.clone().or_else(|| single.clone());
                match item {
                    Some(i) if asked.is_none_or(|(c, ai)| c == r.case_id && ai == i) => {
                        ok.push((i, r))
                    }
                    Some(_) => {}
                    None => bad.push("report does not say which item it is about".into()),
                }
            }
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}
