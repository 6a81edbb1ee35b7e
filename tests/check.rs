//! `onething check`: passes on the shipped mappings, and on broken copies of them names the file
//! and line of each problem.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::root;

/// A private copy of `mappings/` for one test.
fn copy_mappings(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("onething-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root().join("mappings"), &dir);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Replaces the first occurrence of `from` in `file` and returns the 1-based line where it was.
fn edit(dir: &Path, file: &str, from: &str, to: &str) -> usize {
    let p = dir.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    let at = text
        .find(from)
        .unwrap_or_else(|| panic!("`{from}` not in {file}"));
    let line = text[..at].matches('\n').count() + 1;
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    line
}

fn check(dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_onething"))
        .args(["check", "--config"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn assert_reports(dir: &Path, file: &str, line: usize, fragment: &str) {
    let (code, out) = check(dir);
    assert_eq!(code, 1, "check should fail:\n{out}");
    let prefix = format!("{}:{line}: ", dir.join(file).display());
    assert!(
        out.lines()
            .any(|l| l.starts_with(&prefix) && l.contains(fragment)),
        "expected `{prefix}…{fragment}…` in:\n{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn shipped_mappings_pass() {
    let (code, out) = check(&root().join("mappings"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok (3 one-things, 12 items, 10 departments"),
        "{out}"
    );
    assert!(out.contains("working-day calendar 2026)"), "{out}");
}

#[test]
fn toml_syntax_error_is_located() {
    let d = copy_mappings("syntax");
    let line = edit(
        &d,
        "departments/health.toml",
        "connected = true",
        "connected = = true",
    );
    assert_reports(&d, "departments/health.toml", line, "");
}

#[test]
fn unknown_key_is_located() {
    let d = copy_mappings("unknown-key");
    let line = edit(
        &d,
        "departments/health.toml",
        "connected = true",
        "conected = true",
    );
    assert_reports(
        &d,
        "departments/health.toml",
        line,
        "unknown field `conected`",
    );
}

#[test]
fn expression_syntax_error_is_located() {
    let d = copy_mappings("expr");
    let line = edit(
        &d,
        "departments/health.toml",
        "sblsh = \"case_id\"",
        "sblsh = \"case_id ~\"",
    );
    assert_reports(
        &d,
        "departments/health.toml",
        line,
        "expression `case_id ~`",
    );
}

#[test]
fn unknown_code_table_is_located() {
    let d = copy_mappings("code-table");
    let line = edit(
        &d,
        "departments/health.toml",
        "code('health-sex')",
        "code('health-gender')",
    );
    assert_reports(
        &d,
        "departments/health.toml",
        line,
        "unknown code table `health-gender`",
    );
}

#[test]
fn undeclared_credential_is_located() {
    let d = copy_mappings("credential");
    let line = edit(
        &d,
        "departments/health.toml",
        "X-App-Id = \"env.APP_ID\"",
        "X-App-Id = \"env.APPID\"",
    );
    assert_reports(
        &d,
        "departments/health.toml",
        line,
        "`env.APPID` is not declared",
    );
}

#[test]
fn result_of_a_non_prerequisite_is_refused() {
    let d = copy_mappings("results");
    let line = edit(
        &d,
        "departments/health.toml",
        "sblsh = \"case_id\"",
        "sblsh = \"results['hukou'].citizen_id\"",
    );
    assert_reports(
        &d,
        "departments/health.toml",
        line,
        "not one of its prerequisites",
    );
}

#[test]
fn unknown_result_key_is_refused() {
    let d = copy_mappings("result-key");
    let text = std::fs::read_to_string(d.join("departments/police.toml")).unwrap();
    let (from, to) = if text.contains("results['birth-cert'].licence_no") {
        (
            "results['birth-cert'].licence_no",
            "results['birth-cert'].cert_no",
        )
    } else {
        (
            "results[\"birth-cert\"].licence_no",
            "results[\"birth-cert\"].cert_no",
        )
    };
    let line = edit(&d, "departments/police.toml", from, to);
    assert_reports(
        &d,
        "departments/police.toml",
        line,
        "has no result `cert_no`",
    );
}

#[test]
fn approval_must_give_the_catalogs_results() {
    let d = copy_mappings("approval");
    let line = edit(
        &d,
        "departments/health.toml",
        "results.issued_at = ",
        "results.issued = ",
    );
    // The problem is reported at the state entry, which starts a few lines above.
    let (code, out) = check(&d);
    assert_eq!(code, 1);
    let file = d.join("departments/health.toml").display().to_string();
    let reported = out
        .lines()
        .find(|l| l.starts_with(&file) && l.contains("the catalog lists"))
        .unwrap_or_else(|| panic!("{out}"));
    let n: usize = reported[file.len() + 1..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n < line && line - n <= 6, "reported at {n}, edited {line}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn catalog_item_with_unknown_department_is_located() {
    let d = copy_mappings("catalog-dept");
    let line = edit(
        &d,
        "catalog.toml",
        "department = \"hrss\"",
        "department = \"hrs\"",
    );
    assert_reports(&d, "catalog.toml", line, "department `hrs` has no mapping");
}

#[test]
fn incomplete_code_table_is_reported() {
    let d = copy_mappings("incomplete-table");
    edit(&d, "codes/health-id-type.toml", "default = \"99\"\n", "");
    let line = edit(&d, "codes/health-id-type.toml", "[codes]", "[codes]");
    std::fs::write(
        d.join("codes/health-id-type.toml"),
        std::fs::read_to_string(d.join("codes/health-id-type.toml"))
            .unwrap()
            .replace("\"113\" = \"99\"\n", ""),
    )
    .unwrap();
    assert_reports(
        &d,
        "codes/health-id-type.toml",
        line,
        "lacks codes of `gat2000-156-id-type`: 113",
    );
}

#[test]
fn missing_operation_is_reported() {
    let d = copy_mappings("missing-op");
    let line = edit(
        &d,
        "departments/health.toml",
        "[items.birth-cert.withdraw]",
        "[items.birth-cert.cancel]",
    );
    assert_reports(
        &d,
        "departments/health.toml",
        line,
        "unknown field `cancel`",
    );
}

#[test]
fn pre_review_item_needs_its_follow_up() {
    let d = copy_mappings("prereview");
    edit(
        &d,
        "catalog.toml",
        "complete_days = 10\nresults = { card_no",
        "prereview = true\ncomplete_days = 10\nresults = { card_no",
    );
    let (code, out) = check(&d);
    assert_eq!(code, 1);
    assert!(
        out.contains("item `social-card` has no `prereview` operation"),
        "{out}"
    );
    assert!(
        out.contains("item `social-card` has no `complete` operation"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
