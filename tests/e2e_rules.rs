//! Every simulator rule, at every department and aimed at one, through the whole chain: the item
//! ends as the rule says, its dependants are cancelled, the rest of the case is approved.

mod stack;
mod support;

use serde_json::Value;
use stack::Stack;
use support::fixture;

/// A one-thing: its fixture, where the name is, its items with their departments.
type Thing = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

const THINGS: &[Thing] = &[
    (
        "newborn.json",
        &["form", "child", "name"],
        &[
            ("birth-cert", "health"),
            ("hukou", "police"),
            ("medicare-enrol", "medicare"),
            ("social-card", "hrss"),
        ],
    ),
    (
        "restaurant.json",
        &["form", "company", "name"],
        &[
            ("business-licence", "amr"),
            ("food-permit", "amr"),
            ("seal", "police"),
            ("tax-registration", "tax"),
        ],
    ),
    (
        "house-transfer.json",
        &["form", "buyer", "name"],
        &[
            ("property-transfer", "nr"),
            ("water-transfer", "water"),
            ("power-transfer", "power"),
            ("gas-transfer", "gas"),
        ],
    ),
];

/// Items that depend, directly or not, on `item`.
fn dependants(item: &str) -> Vec<&'static str> {
    match item {
        "birth-cert" => vec!["hukou", "medicare-enrol", "social-card"],
        "hukou" => vec!["medicare-enrol", "social-card"],
        "business-licence" => vec!["food-permit", "seal", "tax-registration"],
        "property-transfer" => vec!["water-transfer", "power-transfer", "gas-transfer"],
        _ => vec![],
    }
}

fn with_name(fixture_name: &str, path: &[&str], name: &str, case_id: &str) -> Value {
    let mut v = fixture(fixture_name);
    let mut at = &mut v;
    for p in &path[..path.len() - 1] {
        at = &mut at[*p];
    }
    at[path[path.len() - 1]] = name.into();
    if fixture_name == "house-transfer.json" {
        v["applicant"]["name"] = name.into();
    }
    if fixture_name == "restaurant.json" {
        v["applicant"]["name"] = name.into();
    }
    v["case_id"] = case_id.into();
    v
}

/// Runs `marker` aimed at each department in turn; `want` gives the targeted item's final status.
async fn rule_everywhere(marker: &str, want: &str, name: &str) {
    let stack = Stack::start(name).await;
    let mut cases = Vec::new();
    for (t, (f, path, items)) in THINGS.iter().enumerate() {
        let mut depts: Vec<&str> = items.iter().map(|(_, d)| *d).collect();
        depts.dedup();
        for (d, dept) in depts.iter().enumerate() {
            let case_id = format!("410225-{name}-{t}{d}");
            stack
                .submit(&with_name(f, path, &format!("王{marker}:{dept}"), &case_id))
                .await;
            cases.push((case_id, *items, *dept));
        }
    }
    for (case_id, items, dept) in cases {
        let ev = stack.completed(&case_id).await;
        let finals = &ev.last().unwrap()["detail"]["items"];
        let targeted: Vec<&str> = items
            .iter()
            .filter(|(_, d)| *d == dept)
            .map(|(i, _)| *i)
            .collect();
        // At amr a refused business licence also cancels the food permit that depends on it.
        let first = targeted[0];
        let mut expect: Vec<(&str, String)> = Vec::new();
        for (item, _) in items {
            let s = if *item == first
                || (targeted.contains(item) && !dependants(first).contains(item))
            {
                want.to_string()
            } else if dependants(first).contains(item) {
                "cancelled".to_string()
            } else {
                "approved".to_string()
            };
            expect.push((item, s));
        }
        for (item, s) in expect {
            let mut ok = finals[item] == s.as_str();
            // A dependant that the department refused itself before its prerequisite ended.
            if !ok && s == "cancelled" && targeted.contains(&item) {
                ok = finals[item] == want;
            }
            let trail: Vec<&Value> = ev.iter().filter(|e| e["item"] == *item).collect();
            assert!(
                ok,
                "{case_id} ({marker} at {dept}): {item} is {}, expected {s}; its events: {trail:?}",
                finals[item]
            );
        }
        let seqs: Vec<u64> = ev.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejection_at_each_department() {
    rule_everywhere("驳回", "rejected", "reject").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denial_at_each_department() {
    rule_everywhere("不予", "denied", "deny").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_departments_fail_their_items() {
    rule_everywhere("失联", "failed", "down").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flaky_departments_succeed_on_the_third_push() {
    let stack = Stack::start("flaky").await;
    for (t, (f, path, _)) in THINGS.iter().enumerate() {
        stack
            .submit(&with_name(f, path, "王抖动", &format!("410225-flaky-{t}")))
            .await;
    }
    for t in 0..THINGS.len() {
        let ev = stack.completed(&format!("410225-flaky-{t}")).await;
        let finals = ev.last().unwrap()["detail"]["items"]
            .as_object()
            .unwrap()
            .clone();
        assert!(finals.values().all(|s| s == "approved"), "{finals:?}");
    }
    // Each item was applied for once, though pushed three times.
    let stats = stack.sim_stats().await;
    assert_eq!(stats["health"]["submits"], 1);
    assert_eq!(stats["police"]["submits"], 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rule_aimed_at_one_department_leaves_the_others_alone() {
    let stack = Stack::start("aimed").await;
    stack
        .submit(&with_name(
            "newborn.json",
            &["form", "child", "name"],
            "王驳回:hrss",
            "410225-aimed-1",
        ))
        .await;
    let ev = stack.completed("410225-aimed-1").await;
    let finals = &ev.last().unwrap()["detail"]["items"];
    assert_eq!(finals["social-card"], "rejected");
    for item in ["birth-cert", "hukou", "medicare-enrol"] {
        assert_eq!(finals[item], "approved");
    }
    let rejected = ev.iter().find(|e| e["type"] == "item.rejected").unwrap();
    assert_eq!(rejected["detail"]["reason"], "材料不符合要求");
    stack.stop().await;
}

/// Water rejects the pre-review at once, but is polled only hourly: the gateway learns of it only
/// when the department refuses the follow-up (`已办结`). It must ask and take the rejection, not
/// fail the item.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follow_up_refused_after_the_department_decided_takes_its_decision() {
    let stack = Stack::start_edited("refused", |dir| {
        let p = dir.join("departments/water.toml");
        let s = std::fs::read_to_string(&p).unwrap();
        let s = regex::Regex::new(r#"(?m)^interval = .*$"#)
            .unwrap()
            .replace_all(&s, r#"interval = "1h""#)
            .into_owned();
        std::fs::write(&p, s).unwrap();
    })
    .await;
    let (f, path, _) = THINGS[2];
    let case_id = "410225-refused-1";
    stack
        .submit(&with_name(f, path, "王驳回:water", case_id))
        .await;
    let ev = stack.completed(case_id).await;
    let finals = &ev.last().unwrap()["detail"]["items"];
    assert_eq!(finals["water-transfer"], "rejected", "{ev:#?}");
    assert_eq!(finals["power-transfer"], "approved");
    let rejected = ev
        .iter()
        .find(|e| e["type"] == "item.rejected" && e["item"] == "water-transfer")
        .expect("item.rejected for water-transfer");
    assert!(
        !rejected["detail"]["reason"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    assert!(!ev.iter().any(|e| e["type"] == "item.failed"), "{ev:#?}");
    stack.stop().await;
}
