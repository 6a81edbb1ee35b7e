//! Form fields as the catalog declares them (`[onething.X.fields]`): presence, types, code tables,
//! allowed values, lengths and array sizes; and persons (name, identity document, codes), wherever
//! they appear.

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::{FieldError, ids, pointer_push};
use crate::config::catalog::{FieldSpec, FieldType, OneThing};
use crate::mapping::Mapping;

/// Code table of identity document types (GA/T 2000.156).
pub const ID_TYPE_TABLE: &str = "gat2000-156-id-type";
/// Code table of genders (GB/T 2261.1).
pub const GENDER_TABLE: &str = "gb2261-gender";
/// Code table of ethnicities (GB 3304).
pub const ETHNICITY_TABLE: &str = "gb3304-ethnicity";
/// The identity document type of the 居民身份证.
const RESIDENT_ID: &str = "111";

/// Checks every declared field of the one-thing in `form` (an object, at `/form`).
pub fn check_form(form: &Value, ot: &OneThing, m: &Mapping, errs: &mut Vec<FieldError>) {
    for (path, spec) in &ot.fields {
        let spec = spec.get_ref();
        for (ptr, value) in resolve(form, path, errs) {
            match value {
                None if spec.required => errs.push(FieldError::new(ptr, "required field missing")),
                None => {}
                Some(v) => check_value(spec.ty, spec, v, &ptr, false, m, errs),
            }
        }
    }
}

/// The places a dotted field path (`a.b`, `a.b[].c`) names in `form`, with the value found there
/// (`None`: absent or null). An absent array has no elements, hence no places.
fn resolve<'v>(
    form: &'v Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<(String, Option<&'v Value>)> {
    let segments: Vec<(&str, bool)> = path
        .split('.')
        .map(|s| s.strip_suffix("[]").map_or((s, false), |n| (n, true)))
        .collect();
    let mut frontier: Vec<(String, &Value)> = vec![("/form".to_string(), form)];
    let mut found = Vec::new();
    for (i, &(name, is_array)) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let mut next = Vec::new();
        for (ptr, val) in frontier {
            let Some(obj) = val.as_object() else {
                errs.push(FieldError::new(ptr, "must be an object"));
                continue;
            };
            let here = pointer_push(&ptr, name);
            match obj.get(name).filter(|c| !c.is_null()) {
                None if is_array => {}
                None if segments[i + 1..].iter().any(|s| s.1) => {}
                None => {
                    let full = segments[i + 1..]
                        .iter()
                        .fold(here, |p, s| pointer_push(&p, s.0));
                    found.push((full, None));
                }
                Some(c) if is_array => match c.as_array() {
                    None => errs.push(FieldError::new(here, "must be an array")),
                    Some(a) => {
                        for (j, e) in a.iter().enumerate() {
                            let p = pointer_push(&here, &j.to_string());
                            if last {
                                found.push((p, Some(e).filter(|e| !e.is_null())));
                            } else {
                                next.push((p, e));
                            }
                        }
                    }
                },
                Some(c) if last => found.push((here, Some(c))),
                Some(c) => next.push((here, c)),
            }
        }
        frontier = next;
    }
    found
}

fn type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Text => "a string",
        FieldType::Integer => "an integer",
        FieldType::Number => "a number",
        FieldType::Date => "a date (YYYY-MM-DD)",
        FieldType::Time => "a time (HH:MM)",
        FieldType::Boolean => "true or false",
        FieldType::Code => "a code (string)",
        FieldType::Person => "a person (object)",
        FieldType::Array => "an array",
    }
}

/// Checks one value of type `ty` (for an array element, the array's `of`) under `spec`.
fn check_value(
    ty: FieldType,
    spec: &FieldSpec,
    v: &Value,
    ptr: &str,
    element: bool,
    m: &Mapping,
    errs: &mut Vec<FieldError>,
) {
    let mut err = |msg: String| errs.push(FieldError::new(ptr, msg));
    let wrong_type = || format!("must be {}", type_name(ty));
    match ty {
        FieldType::Text => match v.as_str() {
            None => err(wrong_type()),
            Some(s) => {
                if let Some(msg) = not_allowed(s, spec) {
                    err(msg);
                }
                if let Some(n) = spec.length
                    && s.chars().count() != n
                {
                    err(format!(
                        "must be exactly {n} characters long (is {})",
                        s.chars().count()
                    ));
                }
            }
        },
        FieldType::Integer if !(v.is_i64() || v.is_u64()) => err(wrong_type()),
        FieldType::Number if !v.is_number() => err(wrong_type()),
        FieldType::Boolean if !v.is_boolean() => err(wrong_type()),
        FieldType::Integer | FieldType::Number | FieldType::Boolean => {}
        FieldType::Date => match v.as_str() {
            Some(s) if date_ok(s) => {}
            Some(s) if date_shape(s) => err(format!("`{s}` is not a real calendar date")),
            _ => err(wrong_type()),
        },
        FieldType::Time => match v.as_str() {
            Some(s) if time_ok(s) => {}
            _ => err("must be a time HH:MM between 00:00 and 23:59".to_string()),
        },
        FieldType::Code => match v.as_str() {
            None => err(wrong_type()),
            Some(s) => {
                if let Some(t) = &spec.table
                    && let Some(msg) = not_in_table(s, t, m)
                {
                    err(msg);
                } else if let Some(msg) = not_allowed(s, spec) {
                    err(msg);
                }
            }
        },
        FieldType::Person => check_person(v, ptr, m, errs),
        FieldType::Array => match v.as_array() {
            None => err(wrong_type()),
            Some(_) if element => {}
            Some(a) => {
                if let Some(n) = spec.min_items
                    && a.len() < n
                {
                    err(format!("needs at least {n} element(s)"));
                }
                let Some(of) = spec.of else { return };
                for (i, e) in a.iter().enumerate() {
                    let p = pointer_push(ptr, &i.to_string());
                    check_value(of, spec, e, &p, true, m, errs);
                }
            }
        },
    }
}

fn not_allowed(s: &str, spec: &FieldSpec) -> Option<String> {
    let values = spec.values.as_ref()?;
    (!values.iter().any(|x| x == s))
        .then(|| format!("`{s}` is not allowed here (allowed: {})", values.join(", ")))
}

fn not_in_table(s: &str, table: &str, m: &Mapping) -> Option<String> {
    let t = m.codes.get(table)?;
    (!t.codes.contains_key(s)).then(|| format!("`{s}` is not a code of table {table}"))
}

fn date_shape(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// `YYYY-MM-DD`, a real calendar date.
pub fn date_ok(s: &str) -> bool {
    date_shape(s)
        && NaiveDate::from_ymd_opt(
            s[0..4].parse().unwrap_or(0),
            s[5..7].parse().unwrap_or(0),
            s[8..10].parse().unwrap_or(0),
        )
        .is_some()
}

/// `HH:MM`, 00:00 to 23:59.
pub fn time_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5
        && b[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
        && s[0..2].parse::<u32>().is_ok_and(|h| h < 24)
        && s[3..5].parse::<u32>().is_ok_and(|m| m < 60)
}

/// A person at `ptr`: `name` (non-empty), `id_type` (GA/T 2000.156), `id_number` (a valid
/// 居民身份证 number when `id_type` is `111`), and optionally `gender`, `ethnicity`, `phone`.
pub fn check_person(v: &Value, ptr: &str, m: &Mapping, errs: &mut Vec<FieldError>) {
    let Some(p) = v.as_object() else {
        errs.push(FieldError::new(
            ptr,
            "must be a person (object with name, id_type, id_number)",
        ));
        return;
    };
    let mut err = |key: &str, msg: String| errs.push(FieldError::new(pointer_push(ptr, key), msg));
    let text = |key: &str| -> Result<Option<&str>, String> {
        match p.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err("must be a string".to_string()),
        }
    };
    match text("name") {
        Ok(Some(s)) if !s.trim().is_empty() => {}
        Ok(Some(_)) => err("name", "must not be empty".into()),
        Ok(None) => err("name", "required field missing".into()),
        Err(e) => err("name", e),
    }
    let id_type = match text("id_type") {
        Ok(Some(t)) => {
            if let Some(msg) = not_in_table(t, ID_TYPE_TABLE, m) {
                err("id_type", msg);
            }
            Some(t)
        }
        Ok(None) => {
            err("id_type", "required field missing".into());
            None
        }
        Err(e) => {
            err("id_type", e);
            None
        }
    };
    match text("id_number") {
        Ok(Some(n)) if id_type == Some(RESIDENT_ID) => {
            if let Some(msg) = ids::gb11643_problem(n) {
                err("id_number", msg.into());
            }
        }
        Ok(Some(n)) if n.trim().is_empty() => err("id_number", "must not be empty".into()),
        Ok(Some(_)) => {}
        Ok(None) => err("id_number", "required field missing".into()),
        Err(e) => err("id_number", e),
    }
    for (key, table) in [("gender", GENDER_TABLE), ("ethnicity", ETHNICITY_TABLE)] {
        match text(key) {
            Ok(Some(c)) => {
                if let Some(msg) = not_in_table(c, table, m) {
                    err(key, msg);
                }
            }
            Ok(None) => {}
            Err(e) => err(key, e),
        }
    }
    if let Err(e) = text("phone") {
        err("phone", e);
    }
}

/// Whether `obj` has `key` with a non-null value.
pub fn has(obj: &Map<String, Value>, key: &str) -> bool {
    obj.get(key).is_some_and(|v| !v.is_null())
}
