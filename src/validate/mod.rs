//! Validation of inbound messages: a submission is checked against its JSON Schema, then against
//! the catalog (one-thing, items, prerequisites, identity numbers, form fields, materials, rules).
//! Every problem found is reported, each as a JSON pointer and a plain message.

mod fields;
pub mod ids;
mod rules;
mod schema;

use serde_json::Value;

use crate::mapping::Mapping;

pub use ids::{gb11643_check_char, gb11643_valid, gb32100_check_char, gb32100_valid};

/// One problem of a message: where (a JSON pointer into the message) and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// JSON pointer of the offending value, e.g. `/applicant/id_number`; `""` for the whole body.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// Validates a submission body (raw bytes from the broker) against the schema and the catalog.
/// Ok: the parsed JSON. Err: every problem found (not only the first).
pub fn validate_submission(body: &[u8], m: &Mapping) -> Result<Value, Vec<FieldError>> {
    // RFC 8259 lets a parser ignore a byte order mark; some platforms send one.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| vec![FieldError::new("", format!("not JSON: {e}"))])?;
    let errors = validate_submission_value(&v, m);
    if errors.is_empty() {
        Ok(v)
    } else {
        Err(errors)
    }
}

/// Validates an already-parsed submission; empty when it is valid.
///
/// The schema errors come first. The catalog checks run whatever the schema said, on whatever
/// shape they find; a catalog error at a pointer where the schema already reported one is left
/// out (except the list-level `/items` and `/materials` errors, which name what is missing), and
/// so is any exact repeat.
pub fn validate_submission_value(v: &Value, m: &Mapping) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for e in schema::submission_errors(v) {
        push_unique(&mut errors, e);
    }
    let schema_paths: std::collections::HashSet<String> =
        errors.iter().map(|e| e.path.clone()).collect();
    let mut domain = Vec::new();
    rules::check(v, m, &mut domain);
    for e in domain {
        if ALWAYS_REPORTED.contains(&e.path.as_str()) || !schema_paths.contains(&e.path) {
            push_unique(&mut errors, e);
        }
    }
    errors
}

/// Schema check of a withdrawal (`onething.withdrawal/v1`); empty when it is valid.
pub fn validate_withdrawal_value(v: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for e in schema::withdrawal_errors(v) {
        push_unique(&mut errors, e);
    }
    errors
}

/// Catalog errors reported even where the schema found a problem too.
const ALWAYS_REPORTED: [&str; 2] = ["/items", "/materials"];

fn push_unique(errors: &mut Vec<FieldError>, e: FieldError) {
    if !errors.contains(&e) {
        errors.push(e);
    }
}

/// `base` with one more reference token, escaped as RFC 6901 says (`~` → `~0`, `/` → `~1`).
pub(crate) fn pointer_push(base: &str, token: &str) -> String {
    let mut s = String::with_capacity(base.len() + token.len() + 1);
    s.push_str(base);
    s.push('/');
    for c in token.chars() {
        match c {
            '~' => s.push_str("~0"),
            '/' => s.push_str("~1"),
            c => s.push(c),
        }
    }
    s
}
