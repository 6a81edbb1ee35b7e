//! What the people who run the gateway use beside the daemon itself: readiness for the service
//! manager, dead-letter inspection and replay, audit verification and retention, and the demo.
//!
//! | file | job |
//! | --- | --- |
//! | `logs.rs` | log output (JSON for the daemon), masked on its way out |
//! | `notify.rs` | `Type=notify` readiness (READY, RELOADING, STOPPING) |
//! | `dead.rs` | `onething dead list` / `onething dead replay` |
//! | `audit.rs` | `onething audit verify` |
//! | `demo/` | `onething demo`: simulators, daemon, example cases and a live progress view |

pub mod audit;
pub mod dead;
pub mod logs;
pub mod notify;
