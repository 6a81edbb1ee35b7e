//! `onething dead list` and `onething dead replay`: the dead letters the store keeps, shown with
//! their reasons (personal data masked), and re-submitted to the intake exchange once a mapping or
//! the platform's data is fixed. A dead letter is replayed once: it is marked before it is sent
//! (and unmarked if the broker does not confirm), so two operators replaying at once cannot both
//! send it; `--again` replays one that was replayed before.

use std::fmt::Write as _;

use crate::broker::Broker;
use crate::model::mask::mask_text;
use crate::model::time::rfc3339_ms;
use crate::store::{DeadLetter, Store};

/// The errors of a dead letter in one line: `path: message; …`, masked.
fn errors_line(d: &DeadLetter) -> String {
    let parsed: Option<Vec<serde_json::Value>> = serde_json::from_str(&d.errors).ok();
    let text = match parsed {
        Some(list) => list
            .iter()
            .map(|e| {
                let path = e["path"].as_str().unwrap_or("");
                let msg = e["message"].as_str().unwrap_or("");
                if path.is_empty() {
                    msg.to_string()
                } else {
                    format!("{path}: {msg}")
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        None => d.errors.clone(),
    };
    mask_text(&text)
}

/// The table of `dead list`.
pub fn render_list(letters: &[DeadLetter]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>5}  {:<25}  {:<21}  {:<24}  {:<25}  errors",
        "id", "at", "reason", "case", "replayed"
    );
    for d in letters {
        let _ = writeln!(
            s,
            "{:>5}  {:<25}  {:<21}  {:<24}  {:<25}  {}",
            d.id,
            rfc3339_ms(d.at),
            d.reason,
            d.case_id.as_deref().unwrap_or("-"),
            d.replayed_at.map(rfc3339_ms).unwrap_or_else(|| "-".into()),
            errors_line(d)
        );
    }
    let _ = writeln!(s, "{} dead letter(s)", letters.len());
    s
}

/// The routing key to re-submit with: the one it came with, else what its `schema` says.
pub fn routing_key(d: &DeadLetter) -> String {
    if let Some(k) = d.routing_key.as_deref().filter(|k| !k.is_empty()) {
        return k.to_string();
    }
    let schema = serde_json::from_slice::<serde_json::Value>(&d.body)
        .ok()
        .and_then(|v| v["schema"].as_str().map(str::to_string));
    match schema.as_deref() {
        Some("onething.withdrawal/v1") => "withdrawal".into(),
        _ => "submission".into(),
    }
}

/// One line per dead letter: replayed, skipped (and why) or failed.
pub struct ReplayReport {
    pub lines: Vec<String>,
    pub replayed: usize,
    pub failed: usize,
}

/// Re-submits the given dead letters (none given: every one not replayed yet).
pub async fn replay(
    store: &Store,
    broker: &Broker,
    ids: &[i64],
    again: bool,
    now: i64,
) -> Result<ReplayReport, String> {
    let letters = if ids.is_empty() {
        store.dead_letters(true).await.map_err(|e| e.to_string())?
    } else {
        let mut v = Vec::new();
        for id in ids {
            match store
                .dead_letter_by_id(*id)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(d) => v.push(d),
                None => return Err(format!("no dead letter #{id}")),
            }
        }
        v
    };
    let mut report = ReplayReport {
        lines: Vec::new(),
        replayed: 0,
        failed: 0,
    };
    for d in letters {
        if d.replayed_at.is_some() && !again {
            report.lines.push(format!(
                "#{}: skipped, replayed already at {} (--again replays it once more)",
                d.id,
                rfc3339_ms(d.replayed_at.unwrap_or_default())
            ));
            continue;
        }
        if again {
            store
                .unmark_replayed(d.id)
                .await
                .map_err(|e| e.to_string())?;
        }
        if !store
            .mark_replayed(d.id, now)
            .await
            .map_err(|e| e.to_string())?
        {
            report.lines.push(format!(
                "#{}: skipped, being replayed by someone else",
                d.id
            ));
            continue;
        }
        let key = routing_key(&d);
        match broker.resubmit(&key, &d.body, d.id).await {
            Ok(()) => {
                report.replayed += 1;
                report.lines.push(format!(
                    "#{}: replayed ({key}, case {})",
                    d.id,
                    d.case_id.as_deref().unwrap_or("-")
                ));
            }
            Err(e) => {
                store
                    .unmark_replayed(d.id)
                    .await
                    .map_err(|e| e.to_string())?;
                report.failed += 1;
                report.lines.push(format!("#{}: not replayed: {e}", d.id));
            }
        }
    }
    Ok(report)
}
