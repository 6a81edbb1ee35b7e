//! `onething translate` as runtime.md fixes it: output bytes, exit codes and messages.

mod support;

use std::process::{Command, Output};

use support::*;

fn translate(args: &[&str], with_credentials: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onething"));
    cmd.current_dir(root()).arg("translate").args(args);
    // Only the credentials asked for: nothing from the developer's environment leaks in.
    for (k, _) in std::env::vars() {
        if k.starts_with("ONETHING_") {
            cmd.env_remove(k);
        }
    }
    if with_credentials {
        cmd.envs(CREDENTIALS.iter());
    }
    cmd.output().unwrap()
}

#[test]
fn prints_exactly_the_request_and_nothing_after_it() {
    let out = translate(
        &[
            "--item",
            "birth-cert",
            "--at",
            AT,
            "--nonce",
            NONCE,
            "fixtures/newborn.json",
        ],
        true,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = render("newborn.json", "birth-cert", "submit", None, None).unwrap();
    assert_eq!(out.stdout, expected);
    assert!(!out.stdout.ends_with(b"\n"), "no trailing newline");
}

#[test]
fn without_fixed_clock_and_nonce_the_nonce_is_random() {
    let a = translate(&["--item", "birth-cert", "fixtures/newborn.json"], true);
    let b = translate(&["--item", "birth-cert", "fixtures/newborn.json"], true);
    let nonce = |o: &Output| {
        let (_, h, _) = split_http(&o.stdout);
        header(&h, "X-Nonce").unwrap().to_string()
    };
    assert_eq!(nonce(&a).len(), 32);
    assert_ne!(nonce(&a), nonce(&b));
}

#[test]
fn missing_credentials_exit_1_naming_them() {
    let out = translate(&["--item", "birth-cert", "fixtures/newborn.json"], false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ONETHING_DEPT_HEALTH_APP_ID") && err.contains("ONETHING_DEPT_HEALTH_SECRET"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn an_empty_credential_counts_as_missing() {
    // The shipped environment template lists every credential as `NAME=`; one left unfilled
    // must be named, never sent as an empty secret.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onething"));
    cmd.current_dir(root())
        .args(["translate", "--item", "birth-cert", "fixtures/newborn.json"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("ONETHING_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(CREDENTIALS.iter())
        .env("ONETHING_DEPT_HEALTH_SECRET", "  ");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ONETHING_DEPT_HEALTH_SECRET"), "{err}");
    assert!(!err.contains("ONETHING_DEPT_HEALTH_APP_ID"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn invalid_submission_exits_1_with_every_problem() {
    let dir = std::env::temp_dir().join(format!("onething-translate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut sub = fixture("newborn.json");
    sub["form"]["mother"]["id_number"] = "410225199506120023".into();
    sub["form"]["child"]["birth_date"] = "2026-02-30".into();
    let path = dir.join("bad.json");
    std::fs::write(&path, sub.to_string()).unwrap();
    let out = translate(&["--item", "birth-cert", path.to_str().unwrap()], true);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/form/mother/id_number"), "{err}");
    assert!(err.contains("/form/child/birth_date"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_prerequisite_result_exits_1() {
    // hukou needs the birth certificate number; the example gives no prior results.
    let out = translate(&["--item", "hukou", "fixtures/newborn.json"], true);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("birth-cert"), "{err}");
}

#[test]
fn an_operation_the_department_lacks_exits_1() {
    let out = translate(
        &[
            "--item",
            "property-transfer",
            "--op",
            "query",
            "fixtures/house-transfer.json",
        ],
        true,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no `query` operation"), "{err}");
}

#[test]
fn unknown_item_and_operation_exit_1() {
    let out = translate(&["--item", "passport", "fixtures/newborn.json"], true);
    assert_eq!(out.status.code(), Some(1));
    let out = translate(
        &[
            "--item",
            "birth-cert",
            "--op",
            "resubmit",
            "fixtures/newborn.json",
        ],
        true,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown operation"));
}

#[test]
fn file_exchange_output_names_the_file() {
    let out = translate(
        &[
            "--item",
            "property-transfer",
            "--at",
            AT,
            "fixtures/house-transfer.json",
        ],
        true,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("FILE outbox/410225-20260318-000007_ZYDJ_20260316091530.xml\n\n<?xml version=\"1.0\" encoding=\"GBK\"?>"),
        "{text}"
    );
}
