//! Reading a department's answer to an operation: the first matching rule of the operation's own,
//! then the department's, decides the outcome. An answer no rule recognises is `Unrecognised`,
//! which the dispatcher treats as an unknown outcome (resolved by a query, never by pushing again).

use minijinja::value::Value;

use super::expr::{Expr, Scope};
use crate::codec::{charset, form, json, xml};
use crate::config::department::{Answer, Format, OutcomeKind};
use crate::config::source::{Problem, SourceFile};

#[derive(Debug)]
struct Rule {
    when: Expr,
    outcome: OutcomeKind,
    reference: Option<Expr>,
    error: Option<Expr>,
    retry_after: Option<Expr>,
}

#[derive(Debug)]
pub struct AnswerReader {
    format: Format,
    rules: Vec<Rule>,
}

/// What an answer means for the operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok {
        reference: Option<String>,
    },
    Duplicate {
        reference: Option<String>,
    },
    Retry {
        after_secs: Option<u64>,
        error: String,
    },
    Permanent {
        error: String,
    },
    NotFound,
    Finished,
    Unauthorized,
    Unrecognised {
        error: String,
    },
}

/// An answer as received.
#[derive(Debug, Clone)]
pub struct RawAnswer<'a> {
    pub status: u16,
    /// Header names in lower case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// The outcome, and the parsed answer (for reading status records out of a query's answer).
#[derive(Debug, Clone)]
pub struct ReadAnswer {
    pub outcome: Outcome,
    pub parsed: Value,
}

impl AnswerReader {
    pub fn compile(
        file: &SourceFile,
        op: &Answer,
        dept: &Answer,
        problems: &mut Vec<Problem>,
    ) -> AnswerReader {
        let mut rules = Vec::new();
        for r in op.rules.iter().chain(dept.rules.iter()) {
            let r = r.get_ref();
            let c = |s: &Option<toml::Spanned<String>>, problems: &mut Vec<Problem>| {
                s.as_ref().and_then(|s| {
                    Expr::compile_spanned(file, s)
                        .map_err(|p| problems.push(p))
                        .ok()
                })
            };
            let Ok(when) = Expr::compile_spanned(file, &r.when).map_err(|p| problems.push(p))
            else {
                continue;
            };
            rules.push(Rule {
                when,
                outcome: r.outcome,
                reference: c(&r.reference, problems),
                error: c(&r.error, problems),
                retry_after: c(&r.retry_after, problems),
            });
        }
        AnswerReader {
            format: op.format.or(dept.format).unwrap_or(Format::Json),
            rules,
        }
    }

    pub fn exprs(&self) -> Vec<&Expr> {
        self.rules
            .iter()
            .flat_map(|r| {
                std::iter::once(&r.when)
                    .chain(r.reference.iter())
                    .chain(r.error.iter())
                    .chain(r.retry_after.iter())
            })
            .collect()
    }

    pub fn read(&self, raw: &RawAnswer<'_>) -> ReadAnswer {
        let content_type = raw
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str());
        let text = charset::decode_body(raw.body, content_type);
        let parsed = match (&text, self.format) {
            (Ok(t), Format::Json) if !t.trim().is_empty() => json::parse(t)
                .ok()
                .map(|j| crate::mapping::expr::to_value(&j)),
            (Ok(t), Format::Xml) if !t.trim().is_empty() => xml::parse(t)
                .ok()
                .map(|j| crate::mapping::expr::to_value(&j)),
            (Ok(t), Format::Text) => Some(crate::mapping::expr::to_value(&form::parse(t))),
            _ => None,
        }
        .unwrap_or(Value::UNDEFINED);
        let headers = Value::from_pairs(raw.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        let ctx = Scope::new(None)
            .with("status", Value::from(raw.status))
            .with("headers", headers)
            .with("answer", parsed.clone())
            .with("text", Value::from(text.clone().unwrap_or_default()))
            .into_value();
        let outcome = self.decide(&ctx, raw, text.as_deref().unwrap_or(""));
        ReadAnswer { outcome, parsed }
    }

    fn decide(&self, ctx: &Value, raw: &RawAnswer<'_>, text: &str) -> Outcome {
        for r in &self.rules {
            match r.when.eval(ctx) {
                Ok(v) if v.is_true() => {}
                Ok(_) => continue,
                Err(e) => return Outcome::Unrecognised { error: e },
            }
            let get = |e: &Option<Expr>| -> Result<Option<String>, String> {
                match e {
                    Some(e) => e.eval_opt_string(ctx),
                    None => Ok(None),
                }
            };
            let error = || -> String {
                get(&r.error)
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| summary(raw.status, text))
            };
            return match r.outcome {
                OutcomeKind::Ok | OutcomeKind::Duplicate => match get(&r.reference) {
                    Ok(reference) => {
                        if r.outcome == OutcomeKind::Ok {
                            Outcome::Ok { reference }
                        } else {
                            Outcome::Duplicate { reference }
                        }
                    }
                    Err(e) => Outcome::Unrecognised { error: e },
                },
                OutcomeKind::Retry => Outcome::Retry {
                    after_secs: get(&r.retry_after)
                        .ok()
                        .flatten()
                        .and_then(|s| s.trim().parse().ok()),
                    error: error(),
                },
                OutcomeKind::Permanent => Outcome::Permanent { error: error() },
                OutcomeKind::NotFound => Outcome::NotFound,
                OutcomeKind::Finished => Outcome::Finished,
                OutcomeKind::Unauthorized => Outcome::Unauthorized,
            };
        }
        Outcome::Unrecognised {
            error: format!("unrecognised answer: {}", summary(raw.status, text)),
        }
    }
}

fn summary(status: u16, text: &str) -> String {
    let mut t: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        t.push('…');
    }
    format!("HTTP {status} {t}")
}
