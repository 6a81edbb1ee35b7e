//! The transport edge: how rendered requests reach department systems and how their answers come
//! back, with no knowledge of cases or mappings beyond the request shapes.
//!
//! | module | job |
//! | --- | --- |
//! | [`http`] | the pooled HTTP client: exact requests, answers, and "not sent" vs "unknown" failures |
//! | [`oauth`] | OAuth2 client-credentials tokens, fetched once per department and reused |
//! | [`folder`] | the file exchange: atomic request files, answer files filed into done/error |

pub mod folder;
pub mod http;
pub mod oauth;

pub use http::{Answer, Http, SendError};
pub use oauth::Tokens;
