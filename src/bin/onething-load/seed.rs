//! `--seed N`: N completed newborn cases stored through `onething::store::Store` before the daemon
//! starts, to measure memory with a big store; and the submissions the tool publishes.

use super::*;

/// The fixture with a unique case id, a varied child name and the requested items.
pub fn submission(fixture: &Value, case_id: &str, i: usize, items: &[String]) -> Value {
    const FAMILY: [&str; 8] = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄"];
    const GIVEN: [&str; 8] = [
        "子涵", "一诺", "浩然", "欣怡", "梓萱", "宇轩", "雨桐", "俊杰",
    ];
    let mut v = fixture.clone();
    v["case_id"] = case_id.into();
    v["form"]["child"]["name"] = format!("{}{}", FAMILY[i % 8], GIVEN[(i / 8) % 8]).into();
    if !items.is_empty() {
        v["items"] = items.into();
    }
    v
}

/// Stores `n` newborn cases as after a full, approved life: the state machine is driven (pushes
/// taken, approvals reported) and the final state, every event and the audit records go in one
/// `insert_case` each; the events are then marked published.
pub async fn seed(run: &Run, url: &str) -> Result<(), String> {
    let c = run.env.clone();
    let env: onething::runtime::Env = Arc::new(move |k: &str| c.get(k).cloned());
    let cfg = onething::runtime::RunConfig::from_env(PathBuf::from(ROOT).join("mappings"), env)?;
    let gw = onething::runtime::gateway(&cfg).await?;
    let config = gw.config();
    let (started, cal) = (Instant::now(), &config.calendar);
    for i in 0..run.args.seed {
        let id = format!("410225-S{}-{i:06}", run.tag);
        let v = submission(&run.fixture, &id, i, &[]);
        let mut case = onething::runtime::intake::new_case(&config, &v);
        let now = gw.clock.now();
        let ms = now.timestamp_millis();
        let rec = |it: Option<&str>, dept: Option<&str>, kind: &str| {
            AuditRecord::new(&id, it, dept, ms, kind, kind, Some(kind.as_bytes()))
        };
        let mut audit = vec![rec(None, None, "inbound")];
        let mut fx = onething::engine::apply(&mut case, Input::Received, now, cal);
        let mut k = 0;
        while let Some(f) = fx.get(k).cloned() {
            k += 1;
            let Effect::Push { item, push } = f else {
                continue;
            };
            let dept = case.items[&item].department.clone();
            for kind in ["push", "answer", "callback"] {
                audit.push(rec(Some(&item), Some(&dept), kind));
            }
            let (item, reference) = (item.clone(), Some(format!("R{i}")));
            let taken = Input::PushTaken {
                item: item.clone(),
                push,
                reference,
            };
            fx.extend(onething::engine::apply(&mut case, taken, now, cal));
            if push != Push::Prereview {
                let keys = ["licence_no", "issued_at", "citizen_id", "hukou_no"];
                let keys = keys.into_iter().chain(["insured_no", "card_no"]);
                let results = keys.map(|k| (k.to_string(), format!("{k}-{i}"))).collect();
                let change = Change::Approved {
                    results,
                    accepted_at: None,
                };
                let report = Input::Report {
                    item,
                    reference: None,
                    change,
                };
                fx.extend(onething::engine::apply(&mut case, report, now, cal));
            }
        }
        let extra = onething::runtime::apply::Extra {
            audit,
            ..Default::default()
        };
        let (update, _) = onething::runtime::apply::to_update(&gw, &case, &fx, &extra);
        gw.store
            .insert_case(&case, &v.to_string(), update)
            .await
            .map_err(e)?;
        if (i + 1) % 10_000 == 0 {
            eprintln!(
                "seeded {} cases ({:.0}/s)",
                i + 1,
                (i + 1) as f64 / secs(started)
            );
        }
    }
    gw.store.close().await;
    let pool = sqlx::AnyPool::connect(url).await.map_err(e)?;
    let sql = "UPDATE outbox SET published_at = created_at WHERE published_at IS NULL";
    sqlx::query(sql).execute(&pool).await.map_err(e)?;
    pool.close().await;
    let (n, t) = (run.args.seed, secs(started));
    println!(
        "seeded {n} completed cases in {t:.0} s ({:.0}/s with insert_case)",
        n as f64 / t
    );
    Ok(())
}
