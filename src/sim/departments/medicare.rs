//! Simulator of `medicare` (being written).

use axum::Router;

use crate::sim::Ctx;

pub fn router(ctx: Ctx) -> Router {
    Router::new().with_state(ctx)
}
