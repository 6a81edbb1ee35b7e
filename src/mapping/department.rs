//! A department mapping compiled for use: its operations per item, how its answers, reports and
//! callbacks are read, and its limits. One shape for every department; nothing here names one.

use std::time::Duration;

use indexmap::IndexMap;

use super::answer::AnswerReader;
use super::callback::CallbackReader;
use super::expr::Expr;
use super::operation::{OpKind, Operation};
use super::report::ReportReader;
use super::template::Template;
use crate::config::department::{DepartmentFile, ItemOperations};
use crate::config::source::{Problem, SourceFile};

#[derive(Debug, Default)]
pub struct ItemOps {
    pub submit: Option<Operation>,
    pub prereview: Option<Operation>,
    pub complete: Option<Operation>,
    pub query: Option<Operation>,
    pub withdraw: Option<Operation>,
}

impl ItemOps {
    pub fn get(&self, kind: OpKind) -> Option<&Operation> {
        match kind {
            OpKind::Submit => self.submit.as_ref(),
            OpKind::Prereview => self.prereview.as_ref(),
            OpKind::Complete => self.complete.as_ref(),
            OpKind::Query => self.query.as_ref(),
            OpKind::Withdraw => self.withdraw.as_ref(),
            OpKind::BatchQuery => None,
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &Operation> {
        [
            &self.submit,
            &self.prereview,
            &self.complete,
            &self.query,
            &self.withdraw,
        ]
        .into_iter()
        .flatten()
    }
}

#[derive(Debug)]
pub struct OAuth2 {
    pub token_path: String,
    pub form: Template,
    pub token: Expr,
    pub expires_in: Expr,
    pub answer: AnswerReader,
}

#[derive(Debug)]
pub struct Exchange {
    pub outbox: String,
    pub inbox: String,
    pub not_taken_after: Duration,
    pub records: Expr,
    pub answers_op: Expr,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub concurrency: u32,
    pub per_second: Option<u32>,
    pub timeout: Duration,
    pub retry_attempts: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub poll_interval: Duration,
    pub poll_per_minute: Option<u32>,
    pub quiet: Duration,
}

#[derive(Debug)]
pub struct Department {
    pub id: String,
    pub name: String,
    /// The mapping file, for messages.
    pub file: String,
    pub base_url: Option<String>,
    pub folder: Option<String>,
    pub credentials: Vec<String>,
    pub connected: bool,
    pub limits: Limits,
    pub exchange: Option<Exchange>,
    pub oauth2: Option<OAuth2>,
    pub items: IndexMap<String, ItemOps>,
    pub batch_query: Option<Operation>,
    pub report: Option<ReportReader>,
    pub callback: Option<CallbackReader>,
}

/// The process environment, as a lookup.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => return None,
    })
}

impl Department {
    /// Compiles a department file; problems are collected, and `None` only when nothing usable is left.
    pub fn compile(
        file: &SourceFile,
        d: &DepartmentFile,
        codes: &minijinja::value::Value,
        problems: &mut Vec<Problem>,
    ) -> Department {
        let id = d.id.get_ref().clone();
        let stem = file
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
        if stem.as_deref() != Some(id.as_str()) {
            problems
                .push(file.problem(&d.id.span(), format!("id `{id}` must match the file name")));
        }
        match (&d.base_url, &d.folder) {
            (Some(_), Some(_)) => problems.push(file.problem(
                &d.id.span(),
                "give `base_url` (HTTP) or `folder` (file exchange), not both",
            )),
            (None, None) => problems.push(file.problem(
                &d.id.span(),
                "give `base_url` (HTTP) or `folder` (file exchange)",
            )),
            _ => {}
        }
        let dur = |s: &str, what: &str, problems: &mut Vec<Problem>| {
            parse_duration(s).unwrap_or_else(|| {
                problems.push(file.problem(
                    &d.id.span(),
                    format!("{what}: `{s}` is not a duration (e.g. 30s, 5m, 2h)"),
                ));
                Duration::from_secs(1)
            })
        };
        let limits = Limits {
            concurrency: d.limits.concurrency.unwrap_or(8).max(1),
            per_second: d.limits.per_second,
            timeout: dur(
                d.limits.timeout.as_deref().unwrap_or("10s"),
                "limits.timeout",
                problems,
            ),
            retry_attempts: d.retry.attempts.max(1),
            retry_initial: dur(&d.retry.initial, "retry.initial", problems),
            retry_max: dur(&d.retry.max, "retry.max", problems),
            poll_interval: dur(&d.poll.interval, "poll.interval", problems),
            poll_per_minute: d.poll.per_minute,
            quiet: dur(&d.poll.quiet, "poll.quiet", problems),
        };
        let mut items = IndexMap::new();
        for (code, ops) in &d.items {
            items.insert(code.clone(), compile_item(file, d, ops.get_ref(), problems));
        }
        let batch_query = d.batch_query.as_ref().map(|b| {
            Operation::compile(
                file,
                OpKind::BatchQuery,
                &b.span(),
                b.get_ref(),
                &d.request,
                &d.answer,
                problems,
            )
        });
        let oauth2 = d.oauth2.as_ref().and_then(|o| {
            let token = Expr::compile_spanned(file, &o.token)
                .map_err(|p| problems.push(p))
                .ok()?;
            let expires_in = Expr::compile_spanned(file, &o.expires_in)
                .map_err(|p| problems.push(p))
                .ok()?;
            Some(OAuth2 {
                token_path: o.token_path.clone(),
                form: Template::compile(file, &o.form, problems),
                token,
                expires_in,
                answer: AnswerReader::compile(file, &Default::default(), &d.answer, problems),
            })
        });
        let exchange = d.exchange.as_ref().and_then(|x| {
            Some(Exchange {
                outbox: x.outbox.clone(),
                inbox: x.inbox.clone(),
                not_taken_after: dur(&x.not_taken_after, "exchange.not_taken_after", problems),
                records: Expr::compile_spanned(file, &x.records)
                    .map_err(|p| problems.push(p))
                    .ok()?,
                answers_op: Expr::compile_spanned(file, &x.answers_op)
                    .map_err(|p| problems.push(p))
                    .ok()?,
            })
        });
        if d.folder.is_some() && d.exchange.is_none() {
            problems.push(file.problem(
                &d.id.span(),
                "a file-exchange department needs an `[exchange]` section",
            ));
        }
        let report = ReportReader::compile(file, &d.report, codes, problems);
        let callback = d
            .callback
            .as_ref()
            .and_then(|c| CallbackReader::compile(file, c, codes, problems));
        if d.connected && d.callback.is_none() {
            problems.push(file.problem(
                &d.id.span(),
                "`connected = true` needs a `[callback]` section",
            ));
        }
        if !d.connected && d.callback.is_some() {
            problems.push(file.problem(
                &d.id.span(),
                "a `[callback]` section on a department that is not `connected`",
            ));
        }
        Department {
            id,
            name: d.name.clone(),
            file: file.path.display().to_string(),
            base_url: d.base_url.clone(),
            folder: d.folder.clone(),
            credentials: d.credentials.clone(),
            connected: d.connected,
            limits,
            exchange,
            oauth2,
            items,
            batch_query,
            report,
            callback,
        }
    }

    /// Every expression of the department, for static checks.
    pub fn exprs(&self) -> Vec<&Expr> {
        let mut v: Vec<&Expr> = Vec::new();
        for ops in self.items.values() {
            for op in ops.all() {
                v.extend(op.request_exprs());
                v.extend(op.answer.exprs());
                v.extend(op.records.iter());
            }
        }
        if let Some(b) = &self.batch_query {
            v.extend(b.request_exprs());
            v.extend(b.answer.exprs());
            v.extend(b.records.iter());
        }
        if let Some(o) = &self.oauth2 {
            v.extend(o.form.exprs());
            v.push(&o.token);
            v.push(&o.expires_in);
        }
        if let Some(x) = &self.exchange {
            v.push(&x.records);
            v.push(&x.answers_op);
        }
        if let Some(r) = &self.report {
            v.extend(r.exprs());
        }
        if let Some(c) = &self.callback {
            v.extend(c.exprs());
        }
        v
    }

    /// The base URL: `ONETHING_DEPT_<ID>_URL`, else the mapping's default.
    pub fn resolved_base_url(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        env(&self.env_name("URL")).or_else(|| self.base_url.clone())
    }

    /// The exchange folder: `ONETHING_DEPT_<ID>_DIR`, else the mapping's default.
    pub fn resolved_folder(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        env(&self.env_name("DIR")).or_else(|| self.folder.clone())
    }

    /// `ONETHING_DEPT_<ID>_<NAME>`.
    pub fn env_name(&self, name: &str) -> String {
        format!(
            "ONETHING_DEPT_{}_{}",
            self.id.to_ascii_uppercase().replace('-', "_"),
            name
        )
    }

    /// The refusal naming every missing credential variable (of one department or several).
    pub fn missing_message(missing: &[String]) -> String {
        format!(
            "missing credentials in the environment (unset or empty): {}",
            missing.join(", ")
        )
    }

    /// The department's credentials from `env` (the process environment, normally); every
    /// missing one is named. A variable set to nothing but blanks counts as missing: the shipped
    /// environment template lists every credential as `NAME=`, and an unfilled one must stop the
    /// daemon at start rather than reach a department as an empty password.
    pub fn credentials(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<IndexMap<String, String>, Vec<String>> {
        let mut found = IndexMap::new();
        let mut missing = Vec::new();
        for c in &self.credentials {
            match env(&self.env_name(c)).filter(|v| !v.trim().is_empty()) {
                Some(v) => {
                    found.insert(c.clone(), v);
                }
                None => missing.push(self.env_name(c)),
            }
        }
        if missing.is_empty() {
            Ok(found)
        } else {
            Err(missing)
        }
    }
}

fn compile_item(
    file: &SourceFile,
    d: &DepartmentFile,
    ops: &ItemOperations,
    problems: &mut Vec<Problem>,
) -> ItemOps {
    let c = |kind: OpKind,
             op: &Option<toml::Spanned<crate::config::department::Operation>>,
             problems: &mut Vec<Problem>| {
        op.as_ref().map(|o| {
            Operation::compile(
                file,
                kind,
                &o.span(),
                o.get_ref(),
                &d.request,
                &d.answer,
                problems,
            )
        })
    };
    ItemOps {
        submit: c(OpKind::Submit, &ops.submit, problems),
        prereview: c(OpKind::Prereview, &ops.prereview, problems),
        complete: c(OpKind::Complete, &ops.complete, problems),
        query: c(OpKind::Query, &ops.query, problems),
        withdraw: c(OpKind::Withdraw, &ops.withdraw, problems),
    }
}
