//! One simulator per interface document. Each HTTP system is an axum router; `nr` is a folder.

pub mod amr;
pub mod common;
pub mod health;
pub mod hrss;
pub mod medicare;
pub mod nr;
pub mod police;
pub mod tax;
pub mod utilities;

use axum::Router;

use super::Ctx;

/// The router of an HTTP system.
pub fn router(ctx: Ctx) -> Router {
    match ctx.dept {
        "health" => health::router(ctx),
        "police" => police::router(ctx),
        "medicare" => medicare::router(ctx),
        "hrss" => hrss::router(ctx),
        "amr" => amr::router(ctx),
        "tax" => tax::router(ctx),
        "water" | "power" | "gas" => utilities::router(ctx),
        other => unreachable!("no simulator for {other}"),
    }
}
