//! Render + encode + sign one request per department (the hot path of a push), from a submission
//! already converted to an expression value (the daemon converts each case once).

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use minijinja::value::Value;
use onething::mapping::Mapping;
use onething::mapping::context::{Clock, RenderInput, build};
use onething::mapping::expr::to_value;
use onething::mapping::operation::OpKind;
use onething::model::time::parse_rfc3339;
use onething::translate::read_env_file;

const CASES: &[(&str, &str, OpKind, Option<&str>)] = &[
    ("newborn.json", "birth-cert", OpKind::Submit, None),
    (
        "newborn.json",
        "hukou",
        OpKind::Submit,
        Some("newborn.json"),
    ),
    ("newborn.json", "medicare-enrol", OpKind::Prereview, None),
    (
        "newborn.json",
        "social-card",
        OpKind::Submit,
        Some("newborn.json"),
    ),
    ("restaurant.json", "business-licence", OpKind::Submit, None),
    (
        "restaurant.json",
        "tax-registration",
        OpKind::Submit,
        Some("restaurant.json"),
    ),
    (
        "house-transfer.json",
        "property-transfer",
        OpKind::Submit,
        None,
    ),
    (
        "house-transfer.json",
        "water-transfer",
        OpKind::Prereview,
        None,
    ),
    (
        "house-transfer.json",
        "power-transfer",
        OpKind::Prereview,
        None,
    ),
    (
        "house-transfer.json",
        "gas-transfer",
        OpKind::Submit,
        Some("house-transfer.json"),
    ),
];

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let m = Mapping::load(&root.join("mappings")).expect("mappings");
    let creds = read_env_file(&root.join("mappings/test-credentials.env")).unwrap();
    let t = parse_rfc3339("2026-03-16T09:15:30+08:00").unwrap();
    let mut group = c.benchmark_group("render");
    for (fixture, item, kind, results) in CASES {
        let sub: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("fixtures").join(fixture)).unwrap(),
        )
        .unwrap();
        let results: serde_json::Value = match results {
            Some(r) => serde_json::from_str(
                &std::fs::read_to_string(root.join("fixtures/results").join(r)).unwrap(),
            )
            .unwrap(),
            None => serde_json::json!({}),
        };
        let dept = m.department_of(item).unwrap();
        let op = dept.items[*item].get(*kind).unwrap();
        let case = to_value(&sub);
        let results = to_value(&results);
        let env = Value::from_pairs(dept.credentials(&|k| creds.get(k).cloned()).unwrap());
        let name = format!("{}/{item}/{}", dept.id, kind.as_str());
        group.bench_function(name, |b| {
            b.iter(|| {
                let ctx = build(RenderInput {
                    case: case.clone(),
                    item,
                    results: results.clone(),
                    reference: None,
                    refs: None,
                    reason: None,
                    clock: Clock {
                        now: t,
                        real_now: t,
                    },
                    nonce: "0123456789abcdef0123456789abcdef",
                    token: Some("token"),
                    env: env.clone(),
                    codes: m.codes_value.clone(),
                });
                op.render(ctx).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
