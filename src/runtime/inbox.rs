//! File-exchange departments: their answer files are read from `<folder>/<inbox>`, applied as
//! reports, and filed into `done/` (or `error/` with a `.reason` beside them) once stored. Each
//! file is taken (renamed aside) before it is read, so instances sharing the folder read it once.

use std::sync::Arc;
use std::time::Duration;

use minijinja::value::Value;
use tokio::sync::watch;

use super::apply::{self, Extra};
use super::gateway::{Config, Gateway};
use super::reports;
use crate::codec::{charset, xml};
use crate::mapping::department::Department;
use crate::mapping::expr::{Scope, to_value};
use crate::mapping::report::records_of;
use crate::store::AuditRecord;
use crate::transport::folder;

/// Watches every file-exchange department until `stop`.
pub async fn run(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    loop {
        let cfg = gw.config();
        for dept in cfg
            .mapping
            .departments
            .values()
            .filter(|d| d.exchange.is_some())
        {
            if let Err(e) = scan(&gw, &cfg, dept).await {
                tracing::warn!(department = %dept.id, error = %e, "cannot read the exchange folder");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

async fn scan(gw: &Gateway, cfg: &Config, dept: &Department) -> Result<(), String> {
    let x = dept.exchange.as_ref().expect("exchange department");
    let dir = std::path::Path::new(cfg.endpoint(&dept.id).unwrap_or("."));
    let inbox = dir.join(&x.inbox);
    if !inbox.is_dir() {
        return Ok(());
    }
    // What an instance that died had taken goes back after a lease (ours at once: we restarted).
    let back =
        folder::give_back_taken(&inbox, &gw.instance, gw.lease * 2).map_err(|e| e.to_string())?;
    if back > 0 {
        tracing::info!(department = %dept.id, files = back, "answer files taken but not filed put back");
    }
    let mut files = folder::pending_answers(&inbox).map_err(|e| e.to_string())?;
    // Answers are written in order; their modification times keep it across operations.
    files.sort_by_key(|p| {
        (
            std::fs::metadata(p).and_then(|m| m.modified()).ok(),
            p.clone(),
        )
    });
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Another instance may have taken it since we listed the folder.
        let Some(taken) =
            folder::Taken::take(&inbox, &path, &gw.instance).map_err(|e| e.to_string())?
        else {
            continue;
        };
        let bytes = tokio::fs::read(&taken.path)
            .await
            .map_err(|e| e.to_string())?;
        match read(dept, &name, &bytes) {
            Ok(found) => {
                let mut stored = true;
                for (item, r) in found {
                    let inputs: Vec<_> = reports::input(gw, &item, &r).into_iter().collect();
                    let extra = Extra {
                        audit: vec![AuditRecord::new(
                            &r.case_id,
                            Some(&item),
                            Some(&dept.id),
                            gw.clock.now_ms(),
                            "file",
                            format!("answer file {name}: status {}", r.status),
                            Some(&bytes),
                        )],
                        ..Default::default()
                    };
                    match apply::apply(gw, &r.case_id, &inputs, extra).await {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            super::metrics::Metrics::inc(&gw.metrics.unknown_case_reports);
                            tracing::warn!(department = %dept.id, case_id = %r.case_id, file = %name, "answer file for an unknown case");
                        }
                        Err(e) => {
                            tracing::error!(department = %dept.id, file = %name, error = %e, "answer file not stored; will retry");
                            stored = false;
                        }
                    }
                }
                if stored {
                    taken.done().map_err(|e| e.to_string())?;
                } else {
                    taken.give_back().map_err(|e| e.to_string())?;
                }
            }
            Err(reason) => {
                tracing::warn!(department = %dept.id, file = %name, reason = %reason, "unreadable answer file");
                let _ = gw
                    .store
                    .audit(&[AuditRecord {
                        case_id: None,
                        item: None,
                        department: Some(dept.id.clone()),
                        at: gw.clock.now_ms(),
                        kind: "file".into(),
                        summary: format!("unreadable answer file {name}: {reason}"),
                        body_sha256: None,
                    }])
                    .await;
                taken.error(&reason).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

type Found = Vec<(String, crate::mapping::report::StatusReport)>;

fn read(dept: &Department, name: &str, bytes: &[u8]) -> Result<Found, String> {
    let x = dept.exchange.as_ref().expect("exchange department");
    let text = charset::decode_body(bytes, None)?;
    let tree = xml::parse(&text)?;
    let ctx = Scope::new(None)
        .with("answer", to_value(&tree))
        .with("file_name", Value::from(name))
        .into_value();
    let records = records_of(x.records.eval(&ctx)?);
    let reader = dept.report.as_ref().ok_or("no [report] section")?;
    let single = dept.items.keys().next().cloned();
    let mut found = Vec::new();
    for rec in records {
        let r = reader.read(&rec, single.as_deref(), &[("file_name", Value::from(name))])?;
        let item = r.item.clone().or_else(|| single.clone()).ok_or("no item")?;
        found.push((item, r));
    }
    if found.is_empty() {
        return Err("no status record in the file".into());
    }
    Ok(found)
}
