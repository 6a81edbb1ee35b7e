//! One operation of a department (submit, pre-review, complete, query, withdraw, batch query):
//! compiled from the mapping, then rendered for a case into the exact request the system receives.
//!
//! Rendering order: `inner` document → `vars` → `body` → encode to bytes → `headers` (which see the
//! encoded `body`, so signatures cover the wire bytes).

use std::sync::Arc;

use minijinja::value::Value;

use super::answer::AnswerReader;
use super::expr::{Expr, Scope};
use super::template::{Out, Template};
use crate::codec::{form, json, xml};
use crate::config::department::{Charset, Codec, Operation as OpFile, XmlSpec};
use crate::config::source::{Problem, SourceFile};
use crate::config::tree::{Node, NodeKind};

/// What an operation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Submit,
    Prereview,
    Complete,
    Query,
    Withdraw,
    BatchQuery,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Submit => "submit",
            OpKind::Prereview => "prereview",
            OpKind::Complete => "complete",
            OpKind::Query => "query",
            OpKind::Withdraw => "withdraw",
            OpKind::BatchQuery => "batch_query",
        }
    }
}

#[derive(Debug)]
struct Encoding {
    codec: Codec,
    xml: XmlSpec,
    template: Template,
}

#[derive(Debug)]
pub struct Operation {
    pub kind: OpKind,
    /// `FILE:LINE` where the operation is written.
    pub at: String,
    pub method: Option<String>,
    path: Option<Expr>,
    file: Option<Expr>,
    codec: Codec,
    charset: Charset,
    content_type: Option<String>,
    xml: XmlSpec,
    soap_prefix: String,
    soap_header: Option<Template>,
    inner: Option<Encoding>,
    vars: Vec<(String, Expr)>,
    body: Option<Template>,
    headers: Vec<(String, Expr)>,
    pub answer: AnswerReader,
    /// For queries: the status records in the parsed answer.
    pub records: Option<Expr>,
    pub batch_size: Option<usize>,
    /// Whether the operation needs the department's reference (`ref`).
    pub needs_ref: bool,
}

/// A rendered request, ready for the transport.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Http(HttpRequest),
    File(FileRequest),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query below the base URL.
    pub path: String,
    /// Headers in order, without `Host` and `Content-Length` (the transport adds those).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileRequest {
    /// Path relative to the exchange folder (`outbox/<name>`).
    pub path: String,
    pub bytes: Vec<u8>,
}

impl HttpRequest {
    /// The request exactly as it goes on the wire (HTTP/1.1, CRLF, no trailing newline).
    pub fn to_wire(&self, base_url: &str) -> Result<Vec<u8>, String> {
        let (host, base_path) = split_base(base_url)?;
        let mut out = Vec::with_capacity(self.body.len() + 512);
        let target = format!("{base_path}{}", self.path);
        out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", self.method, target).as_bytes());
        out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        if !self.body.is_empty() || self.method != "GET" {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

/// `http://host:port/prefix` → (`host:port`, `/prefix` without a trailing slash).
pub fn split_base(base_url: &str) -> Result<(String, String), String> {
    let rest = base_url
        .strip_prefix("http://")
        .or_else(|| base_url.strip_prefix("https://"))
        .ok_or_else(|| format!("base URL `{base_url}` must start with http:// or https://"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    Ok((host.to_string(), path.trim_end_matches('/').to_string()))
}

fn expr_field(
    file: &SourceFile,
    s: &Option<toml::Spanned<String>>,
    problems: &mut Vec<Problem>,
) -> Option<Expr> {
    s.as_ref().and_then(|s| {
        Expr::compile_spanned(file, s)
            .map_err(|p| problems.push(p))
            .ok()
    })
}

fn named_exprs(
    file: &SourceFile,
    node: Option<&Node>,
    problems: &mut Vec<Problem>,
) -> Vec<(String, Expr)> {
    let Some(node) = node else { return Vec::new() };
    let NodeKind::Table(fields) = &node.kind else {
        problems.push(file.problem(&node.span, "expected a table of name = expression"));
        return Vec::new();
    };
    fields
        .iter()
        .filter_map(|(k, n)| match n.as_expr() {
            Some(t) => Expr::compile(file, &n.span, t)
                .map(|e| (k.clone(), e))
                .map_err(|p| problems.push(p))
                .ok(),
            None => {
                problems.push(file.problem(&n.span, format!("`{k}` must be an expression string")));
                None
            }
        })
        .collect()
}

/// Overlays `over` on `base` by name (later wins, order of first appearance kept).
fn overlay(mut base: Vec<(String, Expr)>, over: Vec<(String, Expr)>) -> Vec<(String, Expr)> {
    for (k, e) in over {
        match base.iter_mut().find(|(b, _)| b.eq_ignore_ascii_case(&k)) {
            Some(slot) => slot.1 = e,
            None => base.push((k, e)),
        }
    }
    base
}

impl Operation {
    /// Compiles `op` with the department's `defaults` beneath it.
    pub fn compile(
        file: &SourceFile,
        kind: OpKind,
        span: &std::ops::Range<usize>,
        op: &OpFile,
        defaults: &OpFile,
        dept_answer: &crate::config::department::Answer,
        problems: &mut Vec<Problem>,
    ) -> Operation {
        let at = format!("{}:{}", file.path.display(), file.line_of(span.start));
        // The body (and its inner document) may come from `[request]`; an operation without
        // any body (a GET, say) has no codec unless it names one, and `codec = "none"` drops an
        // inherited body.
        let body_node = op.body.as_ref().or(defaults.body.as_ref());
        let inner_spec = op.inner.as_ref().or(defaults.inner.as_ref());
        let codec = match (body_node, op.codec) {
            (_, Some(c)) => c,
            (None, None) => Codec::None,
            (Some(_), None) => defaults.codec.unwrap_or(Codec::None),
        };
        let body_node = body_node.filter(|_| codec != Codec::None);
        let charset = op.charset.or(defaults.charset).unwrap_or(Charset::Utf8);
        let xml = op
            .xml
            .clone()
            .or_else(|| defaults.xml.clone())
            .unwrap_or_default();
        let xml = XmlSpec {
            root: xml
                .root
                .or(defaults.xml.as_ref().and_then(|x| x.root.clone())),
            namespace: xml
                .namespace
                .or(defaults.xml.as_ref().and_then(|x| x.namespace.clone())),
            prefix: xml
                .prefix
                .or(defaults.xml.as_ref().and_then(|x| x.prefix.clone())),
            declaration: xml
                .declaration
                .or(defaults.xml.as_ref().and_then(|x| x.declaration)),
        };
        let soap = op
            .soap
            .clone()
            .or_else(|| defaults.soap.clone())
            .unwrap_or_default();
        let method = op.method.clone().or_else(|| defaults.method.clone());
        let path = expr_field(file, &op.path, problems);
        let file_name = expr_field(file, &op.file, problems);
        if path.is_some() && method.is_none() {
            problems
                .push(file.problem(span, format!("{}: `path` without `method`", kind.as_str())));
        }
        if path.is_none() && file_name.is_none() {
            problems.push(file.problem(
                span,
                format!(
                    "{}: needs `path` (HTTP) or `file` (exchange folder)",
                    kind.as_str()
                ),
            ));
        }
        if codec != Codec::None && body_node.is_none() {
            problems.push(file.problem(
                span,
                format!("{}: codec {:?} needs a `body`", kind.as_str(), codec),
            ));
        }
        if matches!(codec, Codec::Xml | Codec::Soap11) && xml.root.is_none() {
            problems.push(file.problem(span, format!("{}: XML needs `xml.root`", kind.as_str())));
        }
        if codec == Codec::Soap11 && xml.namespace.is_none() {
            problems.push(file.problem(
                span,
                format!("{}: SOAP needs `xml.namespace`", kind.as_str()),
            ));
        }
        let inner = inner_spec.map(|i| Encoding {
            codec: i.codec,
            xml: i.xml.clone(),
            template: Template::compile(file, &i.body, problems),
        });
        let vars = overlay(
            named_exprs(file, defaults.vars.as_ref(), problems),
            named_exprs(file, op.vars.as_ref(), problems),
        );
        let headers = overlay(
            named_exprs(file, defaults.headers.as_ref(), problems),
            named_exprs(file, op.headers.as_ref(), problems),
        );
        let body = body_node.map(|b| Template::compile(file, b, problems));
        let soap_header = soap
            .header
            .as_ref()
            .map(|h| Template::compile(file, h, problems));
        let answer = AnswerReader::compile(file, &op.answer, dept_answer, problems);
        let records = expr_field(file, &op.records, problems);
        let mut operation = Operation {
            kind,
            at,
            method,
            path,
            file: file_name,
            codec,
            charset,
            content_type: op
                .content_type
                .clone()
                .or_else(|| defaults.content_type.clone()),
            xml,
            soap_prefix: soap.prefix.unwrap_or_else(|| "soap".into()),
            soap_header,
            inner,
            vars,
            body,
            headers,
            answer,
            records,
            batch_size: op.batch_size,
            needs_ref: false,
        };
        operation.needs_ref = operation
            .request_exprs()
            .iter()
            .any(|e| e.variables().contains("ref"));
        operation
    }

    /// The status records in a query's answer. `records` sees `answer` plus what the query was
    /// about (`case_id`, `item`, `ref`), for answers that do not repeat it.
    pub fn query_records(
        &self,
        answer: &super::answer::ReadAnswer,
        case_id: &str,
        item: &str,
        reference: Option<&str>,
    ) -> Result<Vec<Value>, String> {
        let Some(records) = &self.records else {
            return Err(format!(
                "{}: `{}` has no `records`",
                self.at,
                self.kind.as_str()
            ));
        };
        let mut scope = Scope::new(None)
            .with("answer", answer.parsed.clone())
            .with("case_id", Value::from(case_id))
            .with("item", Value::from(item));
        if let Some(r) = reference {
            scope.set("ref", Value::from(r));
        }
        Ok(super::report::records_of(
            records.eval(&scope.into_value())?,
        ))
    }

    /// Every expression that builds the request.
    pub fn request_exprs(&self) -> Vec<&Expr> {
        let mut v: Vec<&Expr> = Vec::new();
        v.extend(self.path.iter());
        v.extend(self.file.iter());
        v.extend(self.vars.iter().map(|(_, e)| e));
        v.extend(self.headers.iter().map(|(_, e)| e));
        if let Some(i) = &self.inner {
            v.extend(i.template.exprs());
        }
        if let Some(b) = &self.body {
            v.extend(b.exprs());
        }
        if let Some(h) = &self.soap_header {
            v.extend(h.exprs());
        }
        v
    }

    pub fn is_file(&self) -> bool {
        self.file.is_some()
    }

    /// Renders the request against `ctx` (see `mapping::context`).
    pub fn render(&self, ctx: Value) -> Result<Request, String> {
        let mut scope_val = ctx;
        if let Some(inner) = &self.inner {
            let out = inner
                .template
                .render(&scope_val)?
                .unwrap_or(Out::Obj(Vec::new()));
            let text = encode_text(inner.codec, &inner.xml, None, "", Charset::Utf8, &out)?;
            scope_val = Scope::new(Some(scope_val))
                .with("inner", Value::from(text))
                .into_value();
        }
        if !self.vars.is_empty() {
            let mut computed: Vec<(String, Value)> = Vec::with_capacity(self.vars.len());
            for (name, e) in &self.vars {
                let vars_map = Value::from_pairs(computed.iter().cloned());
                let s = Scope::new(Some(scope_val.clone()))
                    .with("vars", vars_map)
                    .into_value();
                let v = e.eval(&s)?;
                if v.is_undefined() || v.is_none() {
                    return Err(format!(
                        "{}: var `{name}` has no value (`{}`)",
                        e.at, e.source
                    ));
                }
                computed.push((name.clone(), v));
            }
            scope_val = Scope::new(Some(scope_val))
                .with("vars", Value::from_pairs(computed))
                .into_value();
        }
        let body_bytes = match &self.body {
            Some(t) => {
                let out = t.render(&scope_val)?.unwrap_or(Out::Obj(Vec::new()));
                let header = match &self.soap_header {
                    Some(h) => h.render(&scope_val)?,
                    None => None,
                };
                let text = encode_text(
                    self.codec,
                    &self.xml,
                    header.as_ref(),
                    &self.soap_prefix,
                    self.charset,
                    &out,
                )?;
                match self.codec {
                    Codec::Xml | Codec::Soap11 => self.charset.encode_xml(&text),
                    _ => self.charset.encode_strict(&text)?,
                }
            }
            None => Vec::new(),
        };
        if let Some(f) = &self.file {
            let name = f
                .eval_opt_string(&scope_val)?
                .ok_or_else(|| format!("{}: file name has no value", f.at))?;
            return Ok(Request::File(FileRequest {
                path: name,
                bytes: body_bytes,
            }));
        }
        let path = match &self.path {
            Some(p) => p
                .eval_opt_string(&scope_val)?
                .ok_or_else(|| format!("{}: path has no value", p.at))?,
            None => return Err(format!("{}: operation has no path", self.at)),
        };
        let body_value = Value::from_bytes(body_bytes.clone());
        let hscope = Scope::new(Some(scope_val))
            .with("body", body_value)
            .into_value();
        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        if let Some(ct) = &self.content_type
            && self.body.is_some()
        {
            headers.push(("Content-Type".to_string(), ct.clone()));
        }
        for (name, e) in &self.headers {
            match e.eval_opt_string(&hscope)? {
                Some(v) if !v.is_empty() => headers.push((name.clone(), v)),
                _ => {
                    return Err(format!(
                        "{}: header `{name}` has no value (`{}`)",
                        e.at, e.source
                    ));
                }
            }
        }
        Ok(Request::Http(HttpRequest {
            method: self.method.clone().unwrap_or_else(|| "POST".into()),
            path,
            headers,
            body: body_bytes,
        }))
    }
}

/// Encodes a rendered document as text in its format (charset conversion comes after).
fn encode_text(
    codec: Codec,
    spec: &XmlSpec,
    soap_header: Option<&Out>,
    soap_prefix: &str,
    charset: Charset,
    out: &Out,
) -> Result<String, String> {
    let style = xml::XmlStyle {
        prefix: spec.prefix.clone(),
        namespace: spec.namespace.clone(),
    };
    let root = spec.root.as_deref().unwrap_or("request");
    let decl = if spec.declaration.unwrap_or(true) {
        xml::declaration(charset)
    } else {
        String::new()
    };
    Ok(match codec {
        Codec::Json => json::write(out),
        Codec::Form => form::write(out)?,
        Codec::Xml => decl + &xml::write_document(root, &style, out)?,
        Codec::Soap11 => decl + &xml::write_soap(soap_prefix, root, &style, soap_header, out)?,
        Codec::None => String::new(),
    })
}

/// Shared, immutable handle to a compiled operation.
pub type OpRef = Arc<Operation>;
