//! Golden files: for every department and operation, the exact wire output for a fixture with a
//! fixed clock and nonce, checked byte for byte. Cases live in `tests/golden/<department>/cases.toml`;
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected files (review the diff!).

mod support;

use std::collections::BTreeSet;

use serde::Deserialize;
use support::*;

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    fixture: String,
    item: String,
    op: String,
    #[serde(rename = "ref")]
    reference: Option<String>,
    /// A file in `fixtures/results/`.
    results: Option<String>,
    /// The expected output, relative to the department's folder.
    expect: String,
    /// The operation this case exercises when it differs from `op` (`prereview`: a `submit`
    /// without the prerequisite's results).
    covers: Option<String>,
}

fn all_cases() -> Vec<(String, Case)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let dir = entry.unwrap().path();
        let file = dir.join("cases.toml");
        if !file.exists() {
            continue;
        }
        let dept = dir.file_name().unwrap().to_string_lossy().into_owned();
        let cases: Cases = toml::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        out.extend(cases.case.into_iter().map(|c| (dept.clone(), c)));
    }
    out
}

#[test]
fn every_golden_request_matches_byte_for_byte() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (dept, c) in all_cases() {
        let path = golden_dir().join(&dept).join(&c.expect);
        let got = render(
            &c.fixture,
            &c.item,
            &c.op,
            c.reference.as_deref(),
            c.results.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{dept}/{}: {e}", c.expect));
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        match std::fs::read(&path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{}: differs\n--- want\n{}\n--- got\n{}",
                path.display(),
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            )),
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_operation_of_every_department_has_a_golden_case() {
    let covered: BTreeSet<(String, String)> = all_cases()
        .into_iter()
        .map(|(_, c)| (c.item, c.covers.unwrap_or(c.op)))
        .collect();
    let mut missing = Vec::new();
    for dept in MAPPING.departments.values() {
        for (item, ops) in &dept.items {
            for op in ops.all() {
                let name = op.kind.as_str().to_string();
                if !covered.contains(&(item.clone(), name.clone())) {
                    missing.push(format!("{}: {item} {name}", dept.id));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "operations without a golden case: {missing:?}"
    );
}
