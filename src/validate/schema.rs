//! JSON Schema checks of inbound messages against the vendored schemas (`schemas/`), compiled once,
//! with every error turned into a [`FieldError`] that points at the offending value.

use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::{FieldError, pointer_push};

static SUBMISSION: LazyLock<Validator> =
    LazyLock::new(|| compile(include_str!("../../schemas/submission.schema.json")));
static WITHDRAWAL: LazyLock<Validator> =
    LazyLock::new(|| compile(include_str!("../../schemas/withdrawal.schema.json")));

/// Messages longer than this show `value` instead of the value itself.
const MAX_MESSAGE: usize = 200;

fn compile(text: &str) -> Validator {
    let schema: Value = serde_json::from_str(text).expect("vendored schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("vendored schema compiles")
}

/// Schema errors of a submission (`onething.submission/v1`).
pub fn submission_errors(v: &Value) -> Vec<FieldError> {
    errors(&SUBMISSION, v)
}

/// Schema errors of a withdrawal (`onething.withdrawal/v1`).
pub fn withdrawal_errors(v: &Value) -> Vec<FieldError> {
    errors(&WITHDRAWAL, v)
}

fn errors(validator: &Validator, v: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    for e in validator.iter_errors(v) {
        convert(&e, &mut out);
    }
    out
}

/// Turns one schema error into field errors: a missing or unexpected property is reported at the
/// property's own pointer, and a failed `oneOf`/`anyOf` by the errors of the branch that was meant.
fn convert(e: &ValidationError<'_>, out: &mut Vec<FieldError>) {
    let at = e.instance_path().as_str();
    match e.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            out.push(FieldError {
                path: pointer_push(at, &name),
                message: format!("required property `{name}` missing"),
            });
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            for name in unexpected {
                out.push(FieldError {
                    path: pointer_push(at, name),
                    message: format!("property `{name}` is not allowed here"),
                });
            }
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            match meant_branch(context) {
                Some(branch) => branch.iter().for_each(|b| convert(b, out)),
                None => out.push(discriminator_error(e, context)),
            }
        }
        _ => out.push(FieldError {
            path: at.to_string(),
            message: message(e),
        }),
    }
}

fn message(e: &ValidationError<'_>) -> String {
    let full = e.to_string();
    if full.chars().count() <= MAX_MESSAGE {
        full
    } else {
        e.masked().to_string()
    }
}

/// The branch of a `oneOf`/`anyOf` that the value meant to be: one whose `const` keywords all hold
/// (the discriminator, e.g. `kind`), with the fewest errors. `None` when every branch fails a
/// `const`, i.e. the discriminator itself is wrong.
fn meant_branch<'a, 'b>(
    context: &'a [Vec<ValidationError<'b>>],
) -> Option<&'a Vec<ValidationError<'b>>> {
    context
        .iter()
        .filter(|b| {
            !b.iter()
                .any(|e| matches!(e.kind(), ValidationErrorKind::Constant { .. }))
        })
        .min_by_key(|b| b.len())
}

/// Every branch failed a `const`: report the discriminating property with the allowed values.
fn discriminator_error(
    e: &ValidationError<'_>,
    context: &[Vec<ValidationError<'_>>],
) -> FieldError {
    let mut path = None;
    let mut allowed: Vec<String> = Vec::new();
    for b in context {
        for x in b {
            if let ValidationErrorKind::Constant { expected_value } = x.kind() {
                path.get_or_insert_with(|| x.instance_path().as_str().to_string());
                let s = expected_value.to_string();
                if !allowed.contains(&s) {
                    allowed.push(s);
                }
            }
        }
    }
    match path {
        Some(path) => FieldError {
            path,
            message: format!("must be one of {}", allowed.join(", ")),
        },
        None => FieldError {
            path: e.instance_path().as_str().to_string(),
            message: message(e),
        },
    }
}
