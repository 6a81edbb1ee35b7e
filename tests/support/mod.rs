//! Shared by the integration tests: the reference mapping, the test credentials, and `translate`
//! with a fixed clock and nonce.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use indexmap::IndexMap;
use onething::mapping::Mapping;
use onething::translate::{TranslateRequest, read_env_file, translate};

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
    CREDENTIALS
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in test-credentials.env"))
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
    let results = results.map(|r| {
        let p = root().join("fixtures/results").join(r);
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    });
    let req = TranslateRequest {
        item: item.to_string(),
        op: Some(op.to_string()),
        reference: reference.map(str::to_string),
        results,
        reason: None,
        at: Some(AT.to_string()),
        nonce: Some(NONCE.to_string()),
    };
    translate(&MAPPING, &submission, &req, &|k| {
        CREDENTIALS.get(k).cloned()
    })
}

/// Splits a raw HTTP/1.1 request into (request line, headers, body).
pub fn split_http(raw: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
    let pos = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header/body separator");
    let head = String::from_utf8(raw[..pos].to_vec()).expect("ASCII/UTF-8 head");
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_string();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").expect("header line");
            (k.to_string(), v.to_string())
        })
        .collect();
    (request_line, headers, raw[pos + 4..].to_vec())
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn golden_dir() -> PathBuf {
    root().join("tests/golden")
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
