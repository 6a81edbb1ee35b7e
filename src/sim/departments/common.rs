//! Small helpers every simulator uses: the push faults of `失联`/`抖动`, times in the documents'
//! formats, headers, JSON paths.

use axum::http::HeaderMap;
use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use crate::sim::Ctx;
use crate::sim::behaviour::{Behaviour, behaviour};

/// The behaviour a name asks of this department.
pub fn rule(ctx: &Ctx, name: &str) -> Behaviour {
    behaviour(name, ctx.dept)
}

/// Whether this push must fail with a server error (`失联` always, `抖动` the first two times
/// per case, kind and operation).
pub fn push_fails(ctx: &Ctx, b: Behaviour, case_id: &str, kind: &str, op: &str) -> bool {
    match b {
        Behaviour::Down => true,
        Behaviour::Flaky => ctx.world.attempt(ctx.dept, case_id, kind, op) <= 2,
        _ => false,
    }
}

/// A header as text ("" when absent).
pub fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Formats a time with a strftime pattern, in +08:00.
pub fn fmt(t: DateTime<FixedOffset>, pattern: &str) -> String {
    t.format(pattern).to_string()
}

/// The string at a JSON pointer, if it is a non-empty string.
pub fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Checks that every pointer holds a non-empty string; the first one missing is returned.
pub fn require<'a>(v: &Value, pointers: &[&'a str]) -> Result<(), &'a str> {
    for p in pointers {
        if text(v, p).is_none() {
            return Err(p);
        }
    }
    Ok(())
}

/// GB 3304 codes: `01`–`56`, `97`, `98`.
pub fn is_ethnicity(code: &str) -> bool {
    code.len() == 2
        && code
            .parse::<u32>()
            .is_ok_and(|n| (1..=56).contains(&n) || n == 97 || n == 98)
}

/// GB 3304 names, in code order (`01` 汉族 … `56` 基诺族), then 97 and 98.
pub const ETHNIC_NAMES: &[&str] = &[
    "汉族",
    "蒙古族",
    "回族",
    "藏族",
    "维吾尔族",
    "苗族",
    "彝族",
    "壮族",
    "布依族",
    "朝鲜族",
    "满族",
    "侗族",
    "瑶族",
    "白族",
    "土家族",
    "哈尼族",
    "哈萨克族",
    "傣族",
    "黎族",
    "傈僳族",
    "佤族",
    "畲族",
    "高山族",
    "拉祜族",
    "水族",
    "东乡族",
    "纳西族",
    "景颇族",
    "柯尔克孜族",
    "土族",
    "达斡尔族",
    "仫佬族",
    "羌族",
    "布朗族",
    "撒拉族",
    "毛南族",
    "仡佬族",
    "锡伯族",
    "阿昌族",
    "普米族",
    "塔吉克族",
    "怒族",
    "乌孜别克族",
    "俄罗斯族",
    "鄂温克族",
    "德昂族",
    "保安族",
    "裕固族",
    "京族",
    "塔塔尔族",
    "独龙族",
    "鄂伦春族",
    "赫哲族",
    "门巴族",
    "珞巴族",
    "基诺族",
    "其他",
    "外国血统中国籍人士",
];
