//! Reading a connected department's callback: verify who sent it, decrypt where needed, find the
//! status records, and know what to answer.

use minijinja::value::Value;

use super::expr::{Expr, Scope};
use super::report::records_of;
use crate::codec::{charset, json, xml};
use crate::config::department::{Callback, Format, Reply};
use crate::config::source::{Problem, SourceFile};

#[derive(Debug)]
pub struct CallbackReader {
    format: Format,
    verify: Expr,
    vars: Vec<(String, Expr)>,
    records: Expr,
    pub ok: Reply,
    pub unauthorized: Reply,
    pub unreadable: Reply,
    codes: Value,
}

/// What a callback turned out to be.
#[derive(Debug)]
pub enum CallbackRead {
    /// Authentic; its status records (answer `ok` once they are stored).
    Records(Vec<Value>),
    /// Not authentic: answer `unauthorized`, change nothing.
    Unauthorized,
    /// Authentic or not, unreadable: answer `unreadable`, change nothing.
    Unreadable(String),
}

impl CallbackReader {
    pub fn compile(
        file: &SourceFile,
        cb: &Callback,
        codes: &Value,
        problems: &mut Vec<Problem>,
    ) -> Option<CallbackReader> {
        let verify = Expr::compile_spanned(file, &cb.verify)
            .map_err(|p| problems.push(p))
            .ok();
        let records = Expr::compile_spanned(file, &cb.records)
            .map_err(|p| problems.push(p))
            .ok();
        let mut vars = Vec::new();
        if let Some(crate::config::tree::Node {
            kind: crate::config::tree::NodeKind::Table(fields),
            ..
        }) = &cb.vars
        {
            for (k, n) in fields {
                match n.as_expr() {
                    Some(t) => match Expr::compile(file, &n.span, t) {
                        Ok(e) => vars.push((k.clone(), e)),
                        Err(p) => problems.push(p),
                    },
                    None => {
                        problems.push(file.problem(&n.span, format!("`{k}` must be an expression")))
                    }
                }
            }
        }
        Some(CallbackReader {
            format: cb.format,
            verify: verify?,
            vars,
            records: records?,
            ok: cb.replies.ok.clone(),
            unauthorized: cb.replies.unauthorized.clone(),
            unreadable: cb.replies.unreadable.clone().unwrap_or(Reply {
                status: 400,
                content_type: cb.replies.ok.content_type.clone(),
                body: cb.replies.unauthorized.body.clone(),
            }),
            codes: codes.clone(),
        })
    }

    pub fn exprs(&self) -> Vec<&Expr> {
        let mut v = vec![&self.verify, &self.records];
        v.extend(self.vars.iter().map(|(_, e)| e));
        v
    }

    /// `headers` with lower-case names; `env` the department's credentials.
    pub fn read(&self, headers: &[(String, String)], body: &[u8], env: Value) -> CallbackRead {
        let ct = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str());
        let text = match charset::decode_body(body, ct) {
            Ok(t) => t,
            Err(e) => return CallbackRead::Unreadable(e),
        };
        let parsed = match self.format {
            Format::Json => json::parse(&text).map(|j| crate::mapping::expr::to_value(&j)),
            Format::Xml => xml::parse(&text).map(|j| crate::mapping::expr::to_value(&j)),
            Format::Text => Ok(Value::from(text.clone())),
        };
        let parsed = parsed.unwrap_or(Value::UNDEFINED);
        let hv = Value::from_pairs(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        let ctx = Scope::new(None)
            .with("headers", hv)
            .with("raw", Value::from_bytes(body.to_vec()))
            .with("callback", parsed.clone())
            .with("env", env)
            .with("__codes", self.codes.clone())
            .into_value();
        match self.verify.eval(&ctx) {
            Ok(v) if v.is_true() => {}
            _ => return CallbackRead::Unauthorized,
        }
        if parsed.is_undefined() {
            return CallbackRead::Unreadable("callback body cannot be parsed".into());
        }
        let mut computed: Vec<(String, Value)> = Vec::new();
        for (name, e) in &self.vars {
            let s = Scope::new(Some(ctx.clone()))
                .with("vars", Value::from_pairs(computed.iter().cloned()))
                .into_value();
            match e.eval(&s) {
                Ok(v) if !v.is_undefined() => computed.push((name.clone(), v)),
                Ok(_) => return CallbackRead::Unreadable(format!("`{name}` has no value")),
                Err(err) => return CallbackRead::Unreadable(err),
            }
        }
        let s = Scope::new(Some(ctx))
            .with("vars", Value::from_pairs(computed))
            .into_value();
        match self.records.eval(&s) {
            Ok(v) => CallbackRead::Records(records_of(v)),
            Err(e) => CallbackRead::Unreadable(e),
        }
    }
}
