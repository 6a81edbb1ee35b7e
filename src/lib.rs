//! onething — the integration gateway between a county's one-thing (一件事) platform and its
//! department systems.
//!
//! | module | job |
//! | --- | --- |
//! | [`config`] | reads the mapping folder into file-shaped types, with line-located errors |
//! | [`engine`] | the pure case/item state machine: (state, input) → (state, effects) |
//! | [`mapping`] | compiles mappings; renders requests, reads answers, reports and callbacks; `check` |
//! | [`calendar`] | working days and legal time limits |
//! | [`codec`] | wire formats and charsets (JSON, XML/SOAP, forms; UTF-8, GB18030, GBK) |
//! | [`validate`] | submission validation: JSON Schema, identity numbers, catalog rules |
//! | [`model`] | shared value types (times) |
//! | [`ops`] | what operators use: readiness, logs, dead letters, audit verification, the demo |
//! | [`translate`] | the `translate` verb: a dry run of one operation |
//! | [`demo`] | `onething demo`: simulators, daemon and example cases with a live progress view |
//! | [`sim`] | the simulated department systems (`onething sim`); the gateway never imports it |

pub mod broker;
pub mod calendar;
pub mod codec;
pub mod config;
pub mod demo;
pub mod engine;
pub mod mapping;
pub mod model;
pub mod ops;
pub mod runtime;
pub mod sim;
pub mod store;
pub mod translate;
pub mod transport;
pub mod validate;
