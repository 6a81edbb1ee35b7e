//! Audit retention: every hour (and at start), the audit trails of cases completed more than
//! `ONETHING_AUDIT_RETENTION_DAYS` days ago (gateway clock) are removed, whole chains at a time, so
//! that what remains still verifies, and with them those cases' published events. 0 (the default)
//! keeps everything.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::gateway::Gateway;

/// Retention: every hour (and at start), removes the audit trails of cases completed more than
/// `days` days ago (gateway clock). `days` = 0 keeps everything.
pub async fn run(gw: Arc<Gateway>, days: u32, mut stop: watch::Receiver<bool>) {
    if days == 0 {
        return;
    }
    loop {
        let now = gw.clock.now_ms();
        let cutoff = now - i64::from(days) * 86_400_000;
        match gw.store.prune_audit(cutoff, now).await {
            Ok(p) if p.records > 0 || p.events > 0 => {
                tracing::info!(
                    cases = p.cases,
                    records = p.records,
                    events = p.events,
                    days,
                    "audit retention: old trails removed"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "audit retention failed; trying again later"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
