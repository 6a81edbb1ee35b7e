//! A department mapping file (`departments/<id>.toml`) as written: how to reach the system, how to
//! build each operation's request, how to read its answers and status reports, and how to verify its
//! callbacks. Compiled into a `mapping::Department` before use.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::tree::{Node, SpannedExpr};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepartmentFile {
    pub id: Spanned<String>,
    pub name: String,
    /// Default base URL of an HTTP system (`ONETHING_DEPT_<ID>_URL` overrides it).
    pub base_url: Option<String>,
    /// Default folder of a file-exchange system (`ONETHING_DEPT_<ID>_DIR` overrides it).
    pub folder: Option<String>,
    /// Credential names, read from `ONETHING_DEPT_<ID>_<NAME>`; expressions see them as `env.<NAME>`.
    #[serde(default)]
    pub credentials: Vec<String>,
    /// Whether the system calls back with results (else it is polled).
    #[serde(default)]
    pub connected: bool,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub retry: Retry,
    #[serde(default)]
    pub poll: Poll,
    pub exchange: Option<Exchange>,
    /// Defaults for every operation.
    #[serde(default)]
    pub request: Operation,
    /// How answers are read, for every operation (an operation's own rules come first).
    #[serde(default)]
    pub answer: Answer,
    pub oauth2: Option<OAuth2>,
    /// Operations per item code.
    pub items: IndexMap<String, Spanned<ItemOperations>>,
    /// A query for many references at once, where the system offers one.
    pub batch_query: Option<Spanned<Operation>>,
    /// How a status record (from a callback, a query answer or an answer file) is read.
    pub report: Report,
    pub callback: Option<Callback>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests in flight at once.
    pub concurrency: Option<u32>,
    /// Requests per second.
    pub per_second: Option<u32>,
    /// Timeout of one request, e.g. `"10s"`.
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Attempts before the item fails (the retry budget).
    pub attempts: u32,
    pub initial: String,
    pub max: String,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 8,
            initial: "1s".into(),
            max: "5m".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Poll {
    /// How often an open item is asked about (gateway clock).
    pub interval: String,
    /// The most queries a minute the system allows (real time).
    pub per_minute: Option<u32>,
    /// For a connected system: query an item that has been quiet this long.
    pub quiet: String,
}

impl Default for Poll {
    fn default() -> Self {
        Poll {
            interval: "30s".into(),
            per_minute: None,
            quiet: "30m".into(),
        }
    }
}

/// A file-exchange system's folder protocol.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// Where requests are written (relative to the folder).
    pub outbox: String,
    /// Where answers appear; filed into `<inbox>/done` and `<inbox>/error`.
    pub inbox: String,
    /// A request not answered within this long fails the item (`not taken`).
    pub not_taken_after: String,
    /// Parsed answer file → status records; sees `answer` and `file_name`.
    pub records: SpannedExpr,
    /// Which operation an answer file answers (`submit`, `withdraw`, …); sees `file_name`.
    pub answers_op: SpannedExpr,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemOperations {
    /// One-step push.
    pub submit: Option<Spanned<Operation>>,
    /// Pre-review push (容缺预审).
    pub prereview: Option<Spanned<Operation>>,
    /// Pre-review follow-up with the prerequisite's results.
    pub complete: Option<Spanned<Operation>>,
    pub query: Option<Spanned<Operation>>,
    pub withdraw: Option<Spanned<Operation>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Json,
    Xml,
    Soap11,
    Form,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Charset {
    #[serde(rename = "UTF-8")]
    Utf8,
    #[serde(rename = "GB18030")]
    Gb18030,
    #[serde(rename = "GBK")]
    Gbk,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmlSpec {
    /// Root element (for SOAP: the operation element inside `Body`).
    pub root: Option<String>,
    /// Namespace of the root and every element below it (and of the SOAP header's elements).
    pub namespace: Option<String>,
    pub prefix: Option<String>,
    /// Write `<?xml version="1.0" encoding="…"?>` (default true).
    pub declaration: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoapSpec {
    /// Prefix of the envelope namespace (default `soap`).
    pub prefix: Option<String>,
    /// Elements of `<soap:Header>`, in the service namespace.
    pub header: Option<Node>,
}

/// A document rendered first and handed to the outer body as `inner` (an encrypted envelope's
/// business data, a form field holding XML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inner {
    pub codec: Codec,
    #[serde(default)]
    pub xml: XmlSpec,
    pub body: Node,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// HTTP method; absent for a file exchange.
    pub method: Option<String>,
    /// Expression: path and query below the base URL.
    pub path: Option<SpannedExpr>,
    /// Expression: file name in the exchange outbox.
    pub file: Option<SpannedExpr>,
    pub codec: Option<Codec>,
    pub charset: Option<Charset>,
    pub content_type: Option<String>,
    pub xml: Option<XmlSpec>,
    pub soap: Option<SoapSpec>,
    pub inner: Option<Inner>,
    /// Named values computed in order after `inner`, seen as `vars.<name>`.
    pub vars: Option<Node>,
    pub body: Option<Node>,
    /// Header expressions, rendered last (they see the encoded `body`).
    pub headers: Option<Node>,
    #[serde(default)]
    pub answer: Answer,
    /// For queries: the status records in the parsed answer.
    pub records: Option<SpannedExpr>,
    /// For a batch query: the most references per call.
    pub batch_size: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Xml,
    Text,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub format: Option<Format>,
    #[serde(default)]
    pub rules: Vec<Spanned<AnswerRule>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Taken; `reference` gives the department's reference.
    Ok,
    /// A repeat of something already taken; `reference` gives the existing reference.
    Duplicate,
    /// Temporary: try again later (`retry_after` seconds when the answer says).
    Retry,
    /// Refused for good (malformed, invalid, misconfigured).
    Permanent,
    /// The system does not know the application.
    NotFound,
    /// (withdraw) the application is already finished.
    Finished,
    /// The token was refused: fetch a new one and repeat once.
    Unauthorized,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRule {
    /// Expression over `status`, `headers` and `answer`.
    pub when: SpannedExpr,
    pub outcome: OutcomeKind,
    pub reference: Option<SpannedExpr>,
    pub error: Option<SpannedExpr>,
    pub retry_after: Option<SpannedExpr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    /// Path of the token endpoint below the base URL.
    pub token_path: String,
    /// Form fields of the token request (expressions).
    pub form: Node,
    /// Expressions over the token answer.
    pub token: SpannedExpr,
    pub expires_in: SpannedExpr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Expressions over a record `r` (and `item`: the item asked about, if any).
    pub case_id: SpannedExpr,
    /// The item the record is about; absent: the item asked about.
    pub item: Option<SpannedExpr>,
    pub status: SpannedExpr,
    pub reference: Option<SpannedExpr>,
    pub states: Vec<Spanned<StateRule>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Dispatched,
    Progress,
    Accepted,
    Rejected,
    Approved,
    Denied,
    Withdrawn,
    Failed,
    /// Recorded in the audit trail, nothing else.
    Ignore,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateRule {
    /// The department's status value.
    pub status: String,
    /// Only for this item.
    pub item: Option<String>,
    /// Extra condition (expression).
    pub when: Option<SpannedExpr>,
    pub to: Transition,
    pub accepted_at: Option<SpannedExpr>,
    pub reason: Option<SpannedExpr>,
    pub stage: Option<SpannedExpr>,
    pub note: Option<SpannedExpr>,
    /// For `approved`: result key → expression.
    pub results: Option<IndexMap<String, SpannedExpr>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    pub format: Format,
    /// Expression over `headers`, `raw` (the body as received) and `callback` (parsed): true when
    /// the caller is authentic.
    pub verify: SpannedExpr,
    /// Values computed after verification (decryption), seen as `vars.<name>`.
    pub vars: Option<Node>,
    /// Status records in the callback.
    pub records: SpannedExpr,
    pub replies: Replies,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replies {
    /// Once the report is stored.
    pub ok: Reply,
    /// Authentication failed.
    pub unauthorized: Reply,
    /// The body could not be read or decrypted.
    pub unreadable: Option<Reply>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}
