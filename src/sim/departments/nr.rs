//! Simulator of `nr` (being written).

use tokio::sync::watch;

use crate::sim::Ctx;

pub async fn run(_ctx: Ctx, mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
