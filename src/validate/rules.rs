//! The catalog checks of a submission beyond its schema: one-thing and applicant kind, items and
//! prerequisites, prior results, identity numbers, form fields, materials and the catalog's rules.
//! They run on whatever shape the submission has and never panic on odd ones.

use std::collections::HashSet;

use minijinja::value::Value as ExprValue;
use serde_json::{Map, Value};

use super::fields::{self, check_person, has};
use super::{FieldError, ids, pointer_push};
use crate::config::catalog::{OneThing, ResultType};
use crate::mapping::expr::to_value;
use crate::mapping::{Mapping, OneThingChecks};
use crate::model::time::parse_rfc3339;

/// Runs every catalog check on submission `v`, appending what fails to `errs`.
pub fn check(v: &Value, m: &Mapping, errs: &mut Vec<FieldError>) {
    let Some(obj) = v.as_object() else { return };
    check_envelope(obj, errs);
    check_applicant_ids(obj.get("applicant"), m, errs);

    let Some(code) = obj.get("onething").and_then(Value::as_str) else {
        return;
    };
    let Some(ot) = m.catalog.onething.get(code) else {
        let known: Vec<&str> = m.catalog.onething.keys().map(String::as_str).collect();
        errs.push(FieldError::new(
            "/onething",
            format!(
                "unknown one-thing `{code}` (the catalog has: {})",
                known.join(", ")
            ),
        ));
        return;
    };
    let ot = ot.get_ref();

    let want = ot.applicant.get_ref().as_str();
    if let Some(kind) = obj
        .get("applicant")
        .and_then(|a| a.get("kind"))
        .and_then(Value::as_str)
        && kind != want
    {
        errs.push(FieldError::new(
            "/applicant/kind",
            format!("`{code}` takes an applicant of kind `{want}`, not `{kind}`"),
        ));
    }

    let requested = check_items(obj, code, ot, errs);
    check_prior_results(obj, code, ot, &requested, errs);
    if let Some(form) = obj.get("form").filter(|f| f.is_object()) {
        fields::check_form(form, ot, m, errs);
    }

    let ctx = to_value(v);
    let checks = m.checks.get(code);
    check_materials(obj, code, ot, checks, &ctx, errs);
    if let Some(checks) = checks {
        check_rules(checks, &ctx, errs);
    }
}

/// `submitted_at` is an RFC 3339 time; `division` is six digits.
fn check_envelope(obj: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    if let Some(s) = obj.get("submitted_at").and_then(Value::as_str)
        && parse_rfc3339(s).is_none()
    {
        errs.push(FieldError::new(
            "/submitted_at",
            format!("`{s}` is not an RFC 3339 date-time with offset"),
        ));
    }
    if let Some(s) = obj.get("division").and_then(Value::as_str)
        && !(s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()))
    {
        errs.push(FieldError::new(
            "/division",
            format!("`{s}` is not six digits"),
        ));
    }
}

/// The applicant's identity numbers: a person's own, or an organisation's USCC and legal
/// representative. Which of the two an applicant is follows its `kind` (or, without one, whether it
/// has a `legal_rep`).
fn check_applicant_ids(applicant: Option<&Value>, m: &Mapping, errs: &mut Vec<FieldError>) {
    let Some(a) = applicant.and_then(Value::as_object) else {
        return;
    };
    let kind = a.get("kind").and_then(Value::as_str);
    let organization =
        kind == Some("organization") || (kind != Some("person") && has(a, "legal_rep"));
    if !organization {
        check_person(applicant.unwrap_or(&Value::Null), "/applicant", m, errs);
        return;
    }
    if let Some(uscc) = a.get("uscc").and_then(Value::as_str)
        && let Some(msg) = ids::gb32100_problem(uscc)
    {
        errs.push(FieldError::new("/applicant/uscc", msg));
    }
    if let Some(rep) = a.get("legal_rep").filter(|r| !r.is_null()) {
        check_person(rep, "/applicant/legal_rep", m, errs);
    }
}

/// Every requested item is an item of the one-thing; gives the requested items (all when
/// `items` is absent or not an array), in the catalog's order.
fn check_items<'a>(
    obj: &Map<String, Value>,
    code: &str,
    ot: &'a OneThing,
    errs: &mut Vec<FieldError>,
) -> Vec<&'a str> {
    let Some(list) = obj.get("items").and_then(Value::as_array) else {
        return ot.items.keys().map(String::as_str).collect();
    };
    let mut asked = HashSet::new();
    for (i, x) in list.iter().enumerate() {
        let Some(s) = x.as_str() else { continue };
        if ot.items.contains_key(s) {
            asked.insert(s);
        } else {
            errs.push(FieldError::new(
                format!("/items/{i}"),
                format!(
                    "`{s}` is not an item of `{code}` (its items: {})",
                    item_list(ot)
                ),
            ));
        }
    }
    ot.items
        .keys()
        .map(String::as_str)
        .filter(|k| asked.contains(k))
        .collect()
}

fn item_list(ot: &OneThing) -> String {
    ot.items
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prerequisites are requested or given; prior results name only items of the one-thing that are
/// not requested, and give each of their catalog result keys as a string (times RFC 3339).
fn check_prior_results(
    obj: &Map<String, Value>,
    code: &str,
    ot: &OneThing,
    requested: &[&str],
    errs: &mut Vec<FieldError>,
) {
    let empty = Map::new();
    let prior = obj
        .get("prior_results")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for r in requested {
        let Some(item) = ot.items.get(*r) else {
            continue;
        };
        for p in &item.get_ref().prerequisites {
            let p = p.get_ref().as_str();
            if !requested.contains(&p) && !prior.contains_key(p) {
                errs.push(FieldError::new(
                    "/items",
                    format!("item `{r}` needs `{p}`: request `{p}` too or give its results in prior_results"),
                ));
            }
        }
    }
    for (k, given) in prior {
        let ptr = pointer_push("/prior_results", k);
        let Some(item) = ot.items.get(k) else {
            errs.push(FieldError::new(
                ptr,
                format!(
                    "`{k}` is not an item of `{code}` (its items: {})",
                    item_list(ot)
                ),
            ));
            continue;
        };
        if requested.contains(&k.as_str()) {
            errs.push(FieldError::new(
                ptr,
                format!("`{k}` is requested in this case, so its results cannot be given in prior_results"),
            ));
            continue;
        }
        let Some(given) = given.as_object() else {
            continue;
        };
        for (key, ty) in &item.get_ref().results {
            let kp = pointer_push(&ptr, key);
            match given.get(key) {
                None | Some(Value::Null) => {
                    errs.push(FieldError::new(
                        kp,
                        format!("result `{key}` of `{k}` missing"),
                    ));
                }
                Some(Value::String(s)) => {
                    if *ty == ResultType::Datetime && parse_rfc3339(s).is_none() {
                        errs.push(FieldError::new(
                            kp,
                            format!("`{s}` is not an RFC 3339 date-time with offset"),
                        ));
                    }
                }
                Some(_) => errs.push(FieldError::new(kp, "must be a string")),
            }
        }
    }
}

/// Material kinds are the one-thing's; required ones (always, or when their condition holds) are
/// there unless tolerated as missing (容缺).
fn check_materials(
    obj: &Map<String, Value>,
    code: &str,
    ot: &OneThing,
    checks: Option<&OneThingChecks>,
    ctx: &ExprValue,
    errs: &mut Vec<FieldError>,
) {
    let mut present: HashSet<&str> = HashSet::new();
    for (i, mat) in obj
        .get("materials")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(kind) = mat.get("kind").and_then(Value::as_str) else {
            continue;
        };
        present.insert(kind);
        if !ot.materials.contains_key(kind) {
            let known: Vec<&str> = ot.materials.keys().map(String::as_str).collect();
            errs.push(FieldError::new(
                format!("/materials/{i}/kind"),
                format!(
                    "`{kind}` is not a material kind of `{code}` (its kinds: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let tolerated: HashSet<&str> = obj
        .get("tolerance")
        .and_then(|t| t.get("missing"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (kind, spec) in &ot.materials {
        let spec = spec.get_ref();
        let required = spec.required
            || checks
                .and_then(|c| c.material_required_when.get(kind))
                .is_some_and(|e| truth(e.eval(ctx)).unwrap_or(true));
        if required && !present.contains(kind.as_str()) && !tolerated.contains(kind.as_str()) {
            errs.push(FieldError::new(
                "/materials",
                format!("required material {kind} ({}) missing", spec.name),
            ));
        }
    }
}

/// The catalog's cross-field rules: where `when` holds (or cannot be evaluated), `check` must
/// hold; a check that cannot be evaluated fails.
fn check_rules(checks: &OneThingChecks, ctx: &ExprValue, errs: &mut Vec<FieldError>) {
    for rule in &checks.rules {
        let applies = rule
            .when
            .as_ref()
            .is_none_or(|w| truth(w.eval(ctx)).unwrap_or(true));
        if applies && !truth(rule.check.eval(ctx)).unwrap_or(false) {
            errs.push(FieldError::new(rule.path.clone(), rule.message.clone()));
        }
    }
}

fn truth(r: Result<ExprValue, String>) -> Option<bool> {
    match r {
        Ok(v) => Some(v.is_true()),
        Err(e) => {
            tracing::debug!(error = %e, "catalog expression failed during validation");
            None
        }
    }
}
