//! Shared by the integration tests: the reference mapping, the test credentials, `translate` with a
//! fixed clock and nonce, and the readers the department tests share (JSON requests, answers,
//! reports and callbacks through the mapping, XML).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::LazyLock;

use indexmap::IndexMap;
use minijinja::value::Value;
use onething::mapping::Mapping;
use onething::mapping::answer::{AnswerReader, RawAnswer, ReadAnswer};
use onething::mapping::callback::CallbackRead;
use onething::mapping::expr::{Scope, to_value};
use onething::mapping::operation::{OpKind, Operation};
use onething::mapping::report::{Change, StatusReport, records_of};
use onething::translate::{TranslateRequest, read_env_file, translate};
use quick_xml::NsReader;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::Event;
use quick_xml::name::Namespace;
use serde_json::Value as Json;

pub const AT: &str = "2026-03-16T09:15:30+08:00";
pub const NONCE: &str = "0123456789abcdef0123456789abcdef";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub static MAPPING: LazyLock<Mapping> = LazyLock::new(|| {
    Mapping::load(&root().join("mappings")).unwrap_or_else(|p| panic!("mappings invalid:\n{p}"))
});

pub static CREDENTIALS: LazyLock<IndexMap<String, String>> = LazyLock::new(|| {
    read_env_file(&root().join("mappings/test-credentials.env")).expect("test credentials")
});

pub fn cred(name: &str) -> String {
    let v = CREDENTIALS.get(name).cloned();
    v.unwrap_or_else(|| panic!("no {name} in test-credentials.env"))
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = root().join("fixtures").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Translates with the fixed clock and nonce and the test credentials.
pub fn render(
    fixture_name: &str,
    item: &str,
    op: &str,
    reference: Option<&str>,
    results: Option<&str>,
) -> Result<Vec<u8>, String> {
    let submission = fixture(fixture_name);
    let results = results.map(|r| fixture(&format!("results/{r}")));
    let req = TranslateRequest {
        item: item.to_string(),
        op: Some(op.to_string()),
        reference: reference.map(str::to_string),
        results,
        at: Some(AT.to_string()),
        nonce: Some(NONCE.to_string()),
        ..TranslateRequest::default()
    };
    let env = |k: &str| CREDENTIALS.get(k).cloned();
    translate(&MAPPING, &submission, &req, &env)
}

pub type Headers = Vec<(String, String)>;

/// Splits a raw HTTP/1.1 request into (request line, headers, body).
pub fn split_http(raw: &[u8]) -> (String, Headers, Vec<u8>) {
    let pos = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let pos = pos.expect("header/body separator");
    let head = String::from_utf8(raw[..pos].to_vec()).expect("ASCII/UTF-8 head");
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_string();
    let pairs = lines.map(|l| l.split_once(": ").expect("header line"));
    (
        request_line,
        headers(&pairs.collect::<Vec<_>>()),
        raw[pos + 4..].to_vec(),
    )
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let found = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
    found.map(|(_, v)| v.as_str())
}

pub fn golden_dir() -> PathBuf {
    root().join("tests/golden")
}

/// Splits a request, checking `Host`, `Content-Type` (none without a body) and `Content-Length`.
pub fn request(raw: &[u8], host: &str, content_type: &str) -> (String, Headers, Vec<u8>) {
    let (line, headers, body) = split_http(raw);
    assert_eq!(header(&headers, "Host"), Some(host));
    if body.is_empty() {
        assert!(header(&headers, "Content-Type").is_none());
    } else {
        assert_eq!(header(&headers, "Content-Type"), Some(content_type));
        let length = body.len().to_string();
        assert_eq!(header(&headers, "Content-Length"), Some(length.as_str()));
    }
    (line, headers, body)
}

/// A [`request`] with a JSON body: (request line, headers, body text, body as JSON or null).
pub fn json_request(raw: &[u8], host: &str) -> (String, Headers, String, Json) {
    let (line, headers, body) = request(raw, host, "application/json; charset=UTF-8");
    let text = String::from_utf8(body).expect("UTF-8 body");
    let v = (!text.is_empty()).then(|| serde_json::from_str(&text).expect("JSON body"));
    (line, headers, text, v.unwrap_or_default())
}

/// An object's keys, in order.
pub fn keys_of(v: &Json) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

pub fn headers(pairs: &[(&str, &str)]) -> Headers {
    let own = |(k, v): &(&str, &str)| (k.to_string(), v.to_string());
    pairs.iter().map(own).collect()
}

/// The department's credentials as the `env` value its templates and callbacks see.
pub fn env_value(dept: &str) -> Value {
    let env = MAPPING.departments[dept].credentials(&|k| CREDENTIALS.get(k).cloned());
    to_value(&env.unwrap())
}

/// `dept`'s `kind` operation of `item`.
pub fn op(dept: &str, item: &str, kind: OpKind) -> &'static Operation {
    MAPPING.departments[dept].items[item].get(kind).unwrap()
}

/// Reads an answer with `reader`; header names in lower case.
pub fn read_answer(a: &AnswerReader, status: u16, h: &[(&str, &str)], body: &[u8]) -> ReadAnswer {
    let headers = headers(h);
    let raw = RawAnswer {
        status,
        headers: &headers,
        body,
    };
    a.read(&raw)
}

/// The headers of a JSON answer.
pub const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

/// The records a query `op` finds in its `answer`, with the `extra` names in scope.
pub fn query_records(op: &Operation, answer: Value, extra: &[(&'static str, Value)]) -> Vec<Value> {
    let mut scope = Scope::new(None).with("answer", answer);
    extra.iter().for_each(|(k, v)| scope.set(k, v.clone()));
    let records = op.records.as_ref().expect("query records");
    records_of(records.eval(&scope.into_value()).unwrap())
}

/// Reads one status record with `dept`'s report reader (`item`: the item asked about).
pub fn report(dept: &str, record: &Value, item: Option<&str>) -> Result<StatusReport, String> {
    let reader = MAPPING.departments[dept].report.as_ref().unwrap();
    reader.read(record, item, &[])
}

/// The change a status record, given as JSON, makes to `item`.
pub fn change_of(dept: &str, item: Option<&str>, record: &Json) -> Change {
    report(dept, &to_value(record), item).unwrap().change
}

/// Reads a callback to `dept` with its test credentials.
pub fn callback(dept: &str, headers: &[(String, String)], body: &[u8]) -> CallbackRead {
    let cb = MAPPING.departments[dept].callback.as_ref().unwrap();
    cb.read(headers, body, env_value(dept))
}

/// A callback that must be taken, with one record: the record read.
pub fn callback_report(dept: &str, headers: &[(String, String)], body: &[u8]) -> StatusReport {
    match callback(dept, headers, body) {
        CallbackRead::Records(r) if r.len() == 1 => report(dept, &r[0], None).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// An XML element as [`parse_xml`] reads it with quick-xml, independently of the mapping: local
/// names, namespaces resolved, character and entity references decoded.
#[derive(Debug, Default)]
pub struct Elem {
    pub ns: Option<String>,
    pub name: String,
    pub text: String,
    pub children: Vec<Elem>,
}

impl Elem {
    pub fn child(&self, name: &str) -> &Elem {
        let found = self.children.iter().find(|c| c.name == name);
        found.unwrap_or_else(|| panic!("<{}> has no <{name}>", self.name))
    }

    pub fn names(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.name.as_str()).collect()
    }

    pub fn text_of(&self, name: &str) -> &str {
        &self.child(name).text
    }

    /// (name, text) of every child, in order.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.children.iter().map(|c| (&*c.name, &*c.text)).collect()
    }
}

/// The document's root element.
pub fn parse_xml(text: &str) -> Elem {
    let mut reader = NsReader::from_str(text);
    let mut stack = vec![Elem::default()];
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    loop {
        let (ns, ev) = reader.read_resolved_event().expect("well-formed XML");
        let top = stack.last_mut().unwrap();
        match &ev {
            Event::Start(e) | Event::Empty(e) => {
                let ns = Option::<Namespace>::try_from(ns).ok().flatten();
                stack.push(Elem::default());
                let new = stack.last_mut().unwrap();
                (new.ns, new.name) = (ns.map(|n| utf8(n.as_ref())), utf8(e.local_name().as_ref()));
            }
            Event::Text(t) => top.text.push_str(&t.decode().unwrap()),
            Event::GeneralRef(r) => {
                let name = r.decode().unwrap();
                let ch = r.resolve_char_ref().unwrap().map(String::from);
                let ch = ch.or(resolve_xml_entity(&name).map(String::from));
                top.text
                    .push_str(&ch.unwrap_or_else(|| panic!("unknown entity &{name};")));
            }
            Event::Eof => break,
            _ => {}
        }
        if matches!(ev, Event::End(_) | Event::Empty(_)) {
            let el = stack.pop().unwrap();
            stack.last_mut().expect("unbalanced XML").children.push(el);
        }
    }
    let [doc] = <[Elem; 1]>::try_from(stack).expect("unbalanced XML");
    let [root] = <[Elem; 1]>::try_from(doc.children).expect("one root element");
    root
}

/// `<name>value</name>`, or `<name/>` for an empty value.
pub fn el(name: &str, value: &str) -> String {
    match value {
        "" => format!("<{name}/>"),
        v => format!("<{name}>{v}</{name}>"),
    }
}

/// PostgreSQL for tests: `ONETHING_TEST_POSTGRES` (default the machine's trust-auth server).
pub fn pg_admin_url() -> String {
    std::env::var("ONETHING_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh store URL for `name` on `backend` (`sqlite`: a file in a new folder; else a new
/// PostgreSQL database).
pub async fn fresh(backend: &str, name: &str) -> String {
    let unique = format!(
        "ot_{}_{}",
        name.chars().take(24).collect::<String>(),
        std::process::id()
    );
    match backend {
        "sqlite" => {
            let dir = std::env::temp_dir().join(&unique);
            let _ = std::fs::remove_dir_all(&dir);
            format!("sqlite://{}/state.db", dir.display())
        }
        _ => {
            use sqlx::Executor;
            sqlx::any::install_default_drivers();
            let admin = sqlx::AnyPool::connect(&pg_admin_url())
                .await
                .expect("PostgreSQL reachable");
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {unique}"
                )))
                .await;
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {unique}")))
                .await
                .unwrap();
            let base = pg_admin_url();
            let (prefix, _) = base.rsplit_once('/').unwrap();
            format!("{prefix}/{unique}")
        }
    }
}

/// Drops a test database made by `fresh`.
pub async fn drop_pg(url: &str) {
    use sqlx::Executor;
    let name = url.rsplit('/').next().unwrap();
    let admin = sqlx::AnyPool::connect(&pg_admin_url()).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await
        .unwrap();
}
