//! Rendering one operation of an item for a stored case: the context the mapping sees (the
//! submission, results so far, the department's reference, clocks, credentials, token).

use minijinja::value::Value;

use super::gateway::{Config, Gateway};
use crate::engine::Case;
use crate::mapping::context::{self, Clock as RenderClock, RenderInput};
use crate::mapping::department::Department;
use crate::mapping::expr::to_value;
use crate::mapping::operation::{Operation, Request};
use crate::translate::random_nonce;

/// What else an operation may need.
#[derive(Default)]
pub struct Extras<'a> {
    pub reason: Option<&'a str>,
    pub refs: Option<Vec<String>>,
    pub token: Option<&'a str>,
    /// The caller already holds the department's request permit (taken before it marked the
    /// push as sent, so that no wait for the limiter lies between marking and sending).
    pub permitted: bool,
}

/// Renders `op` for `item` of `case` (whose submission is `submission`).
#[allow(clippy::too_many_arguments)]
pub fn render(
    gw: &Gateway,
    cfg: &Config,
    dept: &Department,
    op: &Operation,
    case: &Case,
    submission: &Value,
    item: &str,
    x: Extras<'_>,
) -> Result<Request, String> {
    let it = case.items.get(item);
    let nonce = random_nonce();
    let ctx = context::build(RenderInput {
        case: submission.clone(),
        item,
        results: to_value(&case.results()),
        reference: it.and_then(|i| i.department_ref.as_deref()),
        refs: x.refs,
        reason: x.reason,
        clock: RenderClock {
            now: gw.clock.now(),
            real_now: gw.clock.real_now(),
        },
        nonce: &nonce,
        token: x.token,
        env: cfg.credentials_of(&dept.id),
        codes: cfg.mapping.codes_value.clone(),
    });
    op.render(ctx)
}

/// The submission as an expression value, read straight into one: through a `serde_json::Value`
/// first, reading it took twice as long (4 % of the daemon's CPU under load, for every push and
/// poll).
pub fn submission_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::from(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submission_reads_as_it_did_through_serde_json() {
        let text = r#"{"case_id":"410225-20260316-000123","n":3,"big":18446744073709551615,
            "neg":-7,"f":2.5,"ok":true,"none":null,"list":[1,"二",{"z":1,"a":2}],
            "applicant":{"name":"张三","phone":"13800000000"}}"#;
        let via_json: serde_json::Value = serde_json::from_str(text).unwrap();
        let direct = submission_value(text);
        assert_eq!(direct, to_value(&via_json));
        let keys =
            |v: &Value| -> Vec<String> { v.try_iter().unwrap().map(|k| k.to_string()).collect() };
        assert_eq!(
            keys(&direct),
            keys(&to_value(&via_json)),
            "keys keep their order"
        );
        assert_eq!(
            keys(
                &direct
                    .get_attr("list")
                    .unwrap()
                    .get_item(&Value::from(2))
                    .unwrap()
            ),
            ["z", "a"]
        );
        assert!(submission_value("not json").is_none());
    }
}
