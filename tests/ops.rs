//! What the people who run the gateway rely on, through the real broker, simulators and store:
//! metrics that move, `audit verify` (intact, then broken by hand), SIGHUP reloads (a broken
//! mapping refused in `check`'s words, a fixed one taken), dead-letter replay (once), masked logs,
//! the systemd unit, and `onething demo`.

mod stack;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use onething::sim::behaviour::Timing;
use serde_json::Value;
use stack::Stack;
use support::{fixture, root};

fn onething(stack: &Stack, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_onething"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&stack.env)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `/metrics` once `ready` holds of it (or the last one after 30 s).
async fn metrics_when(addr: std::net::SocketAddr, ready: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = metrics(addr).await;
        if ready(&m) || tokio::time::Instant::now() >= deadline {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_and_the_audit_trail_verifies_until_altered() {
    let stack = Stack::start("ops-metrics").await;
    let addr = stack.daemon().addr;
    let before = metrics(addr).await;
    assert_eq!(
        series(&before, "onething_messages_consumed_total"),
        Some(0.0)
    );
    assert_eq!(
        series(&before, "onething_items_overdue{department=\"police\"}"),
        Some(0.0)
    );
    let mut case = fixture("newborn.json");
    case["case_id"] = "410225-20260316-700001".into();
    stack.submit(&case).await;
    let events = stack.completed("410225-20260316-700001").await;
    // The relay counts an event once its confirm is stored, which may be just after the broker
    // delivered it to us: wait for the count to catch up.
    let after = metrics_when(addr, |m| {
        series(m, "onething_events_published_total").unwrap_or(0.0) >= events.len() as f64
    })
    .await;
    assert_eq!(
        series(&after, "onething_messages_consumed_total"),
        Some(1.0)
    );
    assert!(
        series(&after, "onething_events_published_total").unwrap() >= events.len() as f64,
        "{after}"
    );
    assert!(
        series(
            &after,
            "onething_pushes_total{department=\"health\",outcome=\"ok\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert!(series(&after, "onething_push_seconds_count{department=\"police\"}").unwrap() >= 1.0);
    assert_eq!(series(&after, "onething_cases_open"), Some(0.0));
    assert!(
        !after.contains("onething_items_open{"),
        "no item is open any more: {after}"
    );

    // The trail verifies; after a record is altered by hand it does not, and says which.
    let (code, out, _) = onething(&stack, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("audit trail intact: "), "{out}");
    let store = onething::store::Store::open(&stack.config.database_url)
        .await
        .unwrap();
    let trail = store.case_audit("410225-20260316-700001").await.unwrap();
    let kinds: Vec<&str> = trail.iter().map(|a| a.record.kind.as_str()).collect();
    for k in ["inbound", "push", "answer", "state", "event"] {
        assert!(kinds.contains(&k), "no {k} record in {kinds:?}");
    }
    let victim = trail[trail.len() / 2].id;
    store
        .execute_raw(&format!(
            "UPDATE audit SET summary = 'approved, really' WHERE id = {victim}"
        ))
        .await
        .unwrap();
    let (code, out, _) = onething(&stack, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "audit record #{victim} (case 410225-20260316-700001): altered"
        )),
        "{out}"
    );
    store.close().await;
    stack.stop().await;
}

/// Waits (bounded) until the daemon's log has a line for which `f` holds.
async fn log_line(log: &Path, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(v) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| f(v))
        {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line {what} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sighup(pid: u32) {
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// The promised days of the birth certificate in the catalog copy, replaced.
fn set_birth_cert_days(mappings: &Path, days: u32) {
    let p = mappings.join("catalog.toml");
    let s = std::fs::read_to_string(&p).unwrap();
    let at = s.find("[onething.newborn.items.birth-cert]").unwrap();
    let (head, tail) = s.split_at(at);
    let re = regex::Regex::new(r"complete_days = \d+").unwrap();
    let tail = re.replace(tail, format!("complete_days = {days}").as_str());
    std::fs::write(&p, format!("{head}{tail}")).unwrap();
}

fn due_at_of_birth_cert(events: &[Value]) -> String {
    events
        .iter()
        .find(|e| e["type"] == "item.accepted" && e["item"] == "birth-cert")
        .and_then(|e| e["detail"]["due_at"].as_str())
        .expect("birth-cert accepted with due_at")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_refuses_a_broken_mapping_and_takes_a_fixed_one_and_logs_stay_masked() {
    let stack = Stack::without_daemon(
        "ops-reload",
        Timing {
            accept_after: Duration::ZERO,
            decide_after: Duration::ZERO,
        },
    )
    .await;
    let mappings = stack.config.config_dir.clone();
    let log = stack.work.join("daemon.log");
    let mut daemon = stack.spawn_daemon().await;
    let pid = daemon.0.id();

    // Broken: the same lines `onething check` prints, and the old mappings go on working.
    let health = mappings.join("departments/health.toml");
    let good = std::fs::read_to_string(&health).unwrap();
    std::fs::write(&health, good.replace("[request]", "[request\n")).unwrap();
    let (code, check_out, _) = onething(&stack, &["check", "--config", mappings.to_str().unwrap()]);
    assert_eq!(code, 1);
    sighup(pid);
    let first_problem = check_out.lines().next().unwrap().to_string();
    log_line(&log, "refusing the reload", |v| {
        v["problem"].as_str() == Some(first_problem.as_str())
    })
    .await;
    let mut a = fixture("newborn.json");
    a["case_id"] = "410225-20260316-700011".into();
    stack.submit(&a).await;
    let events_a = stack.completed("410225-20260316-700011").await;

    // Fixed, with a change: cases received from now on promise 20 working days for birth-cert.
    std::fs::write(&health, &good).unwrap();
    set_birth_cert_days(&mappings, 20);
    sighup(pid);
    log_line(&log, "mappings reloaded", |v| {
        v["message"] == "mappings reloaded" && v["generation"] == 2
    })
    .await;
    let mut b = fixture("newborn.json");
    b["case_id"] = "410225-20260316-700012".into();
    stack.submit(&b).await;
    let events_b = stack.completed("410225-20260316-700012").await;
    assert!(
        due_at_of_birth_cert(&events_b) > due_at_of_birth_cert(&events_a),
        "the new promised days are in force"
    );
    let m = metrics(stack.config.http_addr).await;
    assert_eq!(
        series(&m, "onething_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        series(&m, "onething_reloads_total{result=\"refused\"}"),
        Some(1.0)
    );
    assert_eq!(daemon.sigterm(), Some(0));

    // Nothing personal in clear anywhere in the daemon's log.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("410225-20260316-700012"),
        "the log has the cases"
    );
    for person in ["mother", "father"] {
        let p = &a["form"][person];
        for field in ["name", "id_number", "phone"] {
            if let Some(clear) = p[field].as_str() {
                assert!(
                    !text.contains(clear),
                    "{person}.{field} in clear in the log"
                );
            }
        }
    }
    for clear in [
        a["applicant"]["name"].as_str().unwrap(),
        a["applicant"]["id_number"].as_str().unwrap(),
        a["form"]["child"]["name"].as_str().unwrap(),
    ] {
        assert!(!text.contains(clear), "{clear} in clear in the log");
    }
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_is_replayed_once_after_the_data_is_fixed() {
    let stack = Stack::start("ops-dead").await;
    // The platform sent the withdrawal before the case: dead-lettered as `unknown case`.
    let case_id = "410225-20260316-700021";
    let withdrawal = serde_json::json!({
        "schema": "onething.withdrawal/v1", "case_id": case_id,
        "reason": "申请人主动撤回", "requested_at": "2026-03-16T10:00:00+08:00"
    });
    stack
        .publish("withdrawal", withdrawal.to_string().as_bytes())
        .await;
    stack.dead_letters(1).await;
    let (code, list, _) = onething(&stack, &["dead", "list"]);
    assert_eq!(code, 0);
    let line = list
        .lines()
        .find(|l| l.contains(case_id))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("unknown case"), "{line}");
    let id = line.split_whitespace().next().unwrap().to_string();

    // Now the case arrives (its hukou held at police), and the withdrawal is replayed.
    let mut case = fixture("newborn.json");
    case["case_id"] = case_id.into();
    case["form"]["child"]["name"] = "王缓办:police".into();
    stack.submit(&case).await;
    stack
        .events_until(case_id, 60, |evs| {
            evs.iter()
                .any(|e| e["type"] == "item.accepted" && e["item"] == "hukou")
        })
        .await;
    let (code, out, err) = onething(&stack, &["dead", "replay", &id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 replayed, 0 failed"), "{out}");
    let events = stack.completed(case_id).await;
    let withdrawn: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "case.withdrawn")
        .collect();
    assert_eq!(withdrawn.len(), 1);

    // Once: a second replay skips it, and `dead list --pending` no longer shows it.
    let (code, out, _) = onething(&stack, &["dead", "replay", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("skipped, replayed already"), "{out}");
    assert!(out.contains("0 replayed"), "{out}");
    let (_, pending, _) = onething(&stack, &["dead", "list", "--pending"]);
    assert!(!pending.contains(case_id), "{pending}");
    stack.stop().await;
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/onething.service")).unwrap();
    // Verified against the binary just built, where the unit expects the installed one.
    let unit = unit.replace("/usr/local/bin/onething", env!("CARGO_BIN_EXE_onething"));
    let dir = std::env::temp_dir().join(format!("onething-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("onething.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        !said.contains("onething.service"),
        "systemd-analyze complains: {said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_demo_completes_every_case_and_exits_0() {
    let dir = std::env::temp_dir().join(format!("onething-demo-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_onething"))
        .args(["demo", "--dir", dir.to_str().unwrap()])
        .current_dir(root())
        .env_remove("ONETHING_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("5 of 5 case(s) completed; items:"))
        .unwrap_or_else(|| panic!("no summary of 5 completed cases: {stdout}"));
    for status in [" approved", " rejected", " withdrawn"] {
        assert!(summary.contains(status), "no{status} item: {summary}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_daemon_refuses_to_start_with_an_unfilled_credential() {
    // The environment template as installed: every credential present, one left `NAME=`.
    let dir = std::env::temp_dir().join(format!("onething-unfilled-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_onething"))
        .arg("run")
        .current_dir(root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(support::CREDENTIALS.iter())
        .env("ONETHING_DEPT_POLICE_PASSWORD", "")
        .env(
            "ONETHING_DATABASE_URL",
            format!("sqlite://{}/onething.db", dir.display()),
        )
        .env("ONETHING_HTTP_ADDR", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A daemon that starts anyway never exits by itself: wait for its exit with a bound, then fail.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("the daemon started with an empty credential");
    };
    let out = out.unwrap();
    let (status, err) = (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("ONETHING_DEPT_POLICE_PASSWORD"), "{err}");
    assert!(!err.contains("ONETHING_DEPT_POLICE_USER"), "{err}");
    assert!(
        !dir.join("onething.db").exists(),
        "nothing is opened before the configuration is whole"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
