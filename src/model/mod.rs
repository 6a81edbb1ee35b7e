//! Value types shared by every layer; no I/O.

pub mod mask;
pub mod time;
