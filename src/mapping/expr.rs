//! Expressions in mapping files, evaluated with minijinja.
//!
//! Every string leaf of a mapping is a minijinja expression (`form.child.name`,
//! `'WJ-CSYXZM-01'`, `form.mother.id_type | code('health-id-type')`). One environment, built
//! once, holds the gateway's generic filters and functions: time formatting, code-table lookup,
//! hashes, signatures and the SM4 envelope. It knows no department; code tables reach it through
//! the evaluation context (`__codes`).

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::format::StrftimeItems;
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use hmac::{Hmac, Mac};
use minijinja::value::{Object, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Expression, State, UndefinedBehavior};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::config::source::{Problem, SourceFile};
use crate::model::time::{Moment, parse_local, rfc3339};

/// The one expression environment.
pub static ENV: LazyLock<Environment<'static>> = LazyLock::new(build_env);

/// A compiled expression and where it was written.
pub struct Expr {
    pub source: String,
    /// `FILE:LINE`, for messages.
    pub at: String,
    compiled: Box<Expression<'static, 'static>>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({} at {})", self.source, self.at)
    }
}

impl Expr {
    /// Compiles `text` written at `span` of `file`.
    pub fn compile(
        file: &SourceFile,
        span: &std::ops::Range<usize>,
        text: &str,
    ) -> Result<Expr, Problem> {
        let compiled = ENV
            .compile_expression_owned(text.to_string())
            .map_err(|e| file.problem(span, format!("expression `{text}`: {}", describe(&e))))?;
        Ok(Expr {
            source: text.to_string(),
            at: format!("{}:{}", file.path.display(), file.line_of(span.start)),
            compiled: Box::new(compiled),
        })
    }

    pub fn compile_spanned(file: &SourceFile, s: &Spanned<String>) -> Result<Expr, Problem> {
        Self::compile(file, &s.span(), s.get_ref())
    }

    pub fn eval(&self, ctx: &Value) -> Result<Value, String> {
        self.compiled
            .eval(ctx.clone())
            .map_err(|e| format!("{}: `{}`: {}", self.at, self.source, describe(&e)))
    }

    /// Evaluates to a string; undefined and none are `None`.
    pub fn eval_opt_string(&self, ctx: &Value) -> Result<Option<String>, String> {
        let v = self.eval(ctx)?;
        Ok(scalar_string(&v))
    }

    /// The top-level variables this expression reads.
    pub fn variables(&self) -> std::collections::HashSet<String> {
        self.compiled.undeclared_variables(false)
    }
}

/// A scalar value as text; undefined and none are `None`.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => None,
        ValueKind::Bool => Some(if v.is_true() { "true" } else { "false" }.to_string()),
        _ => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(v.to_string()),
        },
    }
}

fn describe(e: &Error) -> String {
    let mut s = match e.detail() {
        Some(d) => d.to_string(),
        None => e.kind().to_string(),
    };
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let _ = write!(s, ": {inner}");
        src = inner.source();
    }
    s
}

fn fail(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

fn bytes_of(v: &Value) -> Result<Vec<u8>, Error> {
    if let Some(b) = v.as_bytes() {
        return Ok(b.to_vec());
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Err(fail("value is missing")),
        _ => Ok(v.to_string().into_bytes()),
    }
}

fn text_of(v: &Value) -> Result<String, Error> {
    String::from_utf8(bytes_of(v)?).map_err(|_| fail("value is not UTF-8 text"))
}

fn strftime(fmt: &str) -> Result<StrftimeItems<'_>, Error> {
    let items = StrftimeItems::new(fmt);
    items
        .clone()
        .parse()
        .map_err(|_| fail(format!("bad time format `{fmt}`")))?;
    Ok(items)
}

/// `value | dt('%Y%m%d')`: formats an RFC 3339 time (in +08:00), a date or a time of day.
fn dt(value: &Value, fmt: &str) -> Result<Value, Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(value.clone());
    }
    let s = text_of(value)?;
    let m = Moment::parse(&s).ok_or_else(|| fail(format!("`{s}` is not a date or time")))?;
    let items = strftime(fmt)?;
    let mut out = String::new();
    let r = match m {
        Moment::At(t) => write!(out, "{}", t.format_with_items(items)),
        Moment::Date(d) => write!(out, "{}", d.format_with_items(items)),
        Moment::Time(t) => write!(out, "{}", t.format_with_items(items)),
    };
    r.map_err(|_| fail(format!("`{fmt}` asks for more than `{s}` holds")))?;
    Ok(Value::from(out))
}

/// `value | parse_time('%Y-%m-%d %H:%M:%S')`: a department's time (no offset: +08:00) as RFC 3339.
/// Without a format, RFC 3339 or `YYYY-MM-DD HH:MM:SS`. Empty values stay undefined.
fn parse_time(value: &Value, fmt: Option<&str>) -> Result<Value, Error> {
    let Some(s) = scalar_string(value).filter(|s| !s.trim().is_empty()) else {
        return Ok(Value::UNDEFINED);
    };
    let parsed = match fmt {
        Some(f) => parse_local(s.trim(), f),
        None => match Moment::parse(&s) {
            Some(Moment::At(t)) => Some(rfc3339(t)),
            _ => None,
        },
    };
    parsed
        .map(Value::from)
        .ok_or_else(|| fail(format!("`{s}` is not a time in the expected format")))
}

/// `value | code('table')`: looks the value up in a code table.
fn code(state: &State, value: &Value, table: &str) -> Result<Value, Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(value.clone());
    }
    let codes = state
        .lookup("__codes")
        .ok_or_else(|| fail("no code tables in this context"))?;
    let t = codes.get_attr(table)?;
    if t.is_undefined() {
        return Err(fail(format!("unknown code table `{table}`")));
    }
    let key = text_of(value)?;
    let v = t.get_attr(&key)?;
    if !v.is_undefined() {
        return Ok(v);
    }
    let d = t.get_attr("*")?;
    if !d.is_undefined() {
        return Ok(d);
    }
    Err(fail(format!("`{key}` is not in code table `{table}`")))
}

/// `value | fixed(2)`: a number written with that many decimals.
fn fixed(value: &Value, decimals: usize) -> Result<Value, Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(value.clone());
    }
    let n: f64 = f64::try_from(value.clone()).or_else(|_| {
        text_of(value)?
            .trim()
            .parse::<f64>()
            .map_err(|_| fail("not a number"))
    })?;
    Ok(Value::from(format!("{n:.decimals$}")))
}

fn from_json(value: &Value) -> Result<Value, Error> {
    let s = text_of(value)?;
    let j: serde_json::Value =
        serde_json::from_str(&s).map_err(|e| fail(format!("not JSON: {e}")))?;
    Ok(crate::mapping::expr::to_value(&j))
}

fn sha256_hex(v: &Value) -> Result<String, Error> {
    Ok(hex::encode(Sha256::digest(bytes_of(v)?)))
}

fn md5_hex(v: &Value) -> Result<String, Error> {
    use md5::Digest as _;
    Ok(hex::encode(md5::Md5::digest(bytes_of(v)?)))
}

fn sm3_hex(v: &Value) -> Result<String, Error> {
    use sm3::Digest as _;
    Ok(hex::encode(sm3::Sm3::digest(bytes_of(v)?)))
}

fn hmac_sha256_hex(key: &Value, msg: &Value) -> Result<String, Error> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&bytes_of(key)?).map_err(|_| fail("bad HMAC key"))?;
    mac.update(&bytes_of(msg)?);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

fn sm4_key(hex_key: &Value) -> Result<[u8; 16], Error> {
    let k = hex::decode(text_of(hex_key)?.trim()).map_err(|_| fail("SM4 key is not hex"))?;
    k.try_into()
        .map_err(|_| fail("SM4 key must be 16 bytes (32 hex characters)"))
}

/// SM4-ECB with PKCS#7 padding, Base64 (standard alphabet, padded).
fn sm4_encrypt(hex_key: &Value, plain: &Value) -> Result<String, Error> {
    let key = sm4_key(hex_key)?;
    let ct = ecb::Encryptor::<sm4::Sm4>::new(&key.into())
        .encrypt_padded_vec_mut::<Pkcs7>(&bytes_of(plain)?);
    Ok(B64.encode(ct))
}

/// The inverse of `sm4_encrypt`, giving UTF-8 text.
fn sm4_decrypt(hex_key: &Value, b64: &Value) -> Result<String, Error> {
    let key = sm4_key(hex_key)?;
    let ct = B64
        .decode(text_of(b64)?.trim())
        .map_err(|_| fail("not Base64"))?;
    let pt = ecb::Decryptor::<sm4::Sm4>::new(&key.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ct)
        .map_err(|_| fail("cannot decrypt (wrong key or padding)"))?;
    String::from_utf8(pt).map_err(|_| fail("decrypted data is not UTF-8"))
}

/// Constant-time comparison of two strings (signatures, tokens). Exact: compare hex signatures
/// with `| lower` on the received side where a system may send upper case.
fn ct_eq(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (scalar_string(a), scalar_string(b)) else {
        return false;
    };
    if a.len() != b.len() {
        return false;
    }
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// `find(tree, 'Result')`: the first value under a key of that name, searched depth-first (to
/// reach into SOAP envelopes without naming each level).
fn find(tree: &Value, name: &str) -> Value {
    fn walk(v: &Value, name: &str, depth: usize) -> Option<Value> {
        if depth > 32 {
            return None;
        }
        match v.kind() {
            ValueKind::Map => {
                let direct = v.get_attr(name).ok().filter(|x| !x.is_undefined());
                if direct.is_some() {
                    return direct;
                }
                for k in v.try_iter().ok()? {
                    if let Ok(child) = v.get_item(&k)
                        && let Some(found) = walk(&child, name, depth + 1)
                    {
                        return Some(found);
                    }
                }
                None
            }
            ValueKind::Seq => v.try_iter().ok()?.find_map(|c| walk(&c, name, depth + 1)),
            _ => None,
        }
    }
    walk(tree, name, 0).unwrap_or(Value::UNDEFINED)
}

fn b64encode(v: &Value) -> Result<String, Error> {
    Ok(B64.encode(bytes_of(v)?))
}

fn build_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.add_filter("dt", dt);
    env.add_filter("parse_time", parse_time);
    env.add_filter("code", code);
    env.add_filter("fixed", fixed);
    env.add_filter("from_json", from_json);
    env.add_filter("b64encode", b64encode);
    env.add_function("sha256_hex", sha256_hex);
    env.add_function("md5_hex", md5_hex);
    env.add_function("sm3_hex", sm3_hex);
    env.add_function("hmac_sha256_hex", hmac_sha256_hex);
    env.add_function("sm4_encrypt", sm4_encrypt);
    env.add_function("sm4_decrypt", sm4_decrypt);
    env.add_function("ct_eq", ct_eq);
    env.add_function("find", find);
    env
}

/// An evaluation scope: named values over a parent scope. Lookups that miss fall through to the
/// parent, so nested scopes (an element of a repeated group, the encoded body) cost one small
/// allocation each.
#[derive(Debug)]
pub struct Scope {
    names: Vec<(&'static str, Value)>,
    parent: Option<Value>,
}

impl Scope {
    pub fn new(parent: Option<Value>) -> Self {
        Scope {
            names: Vec::with_capacity(8),
            parent,
        }
    }
    pub fn with(mut self, name: &'static str, v: Value) -> Self {
        self.names.push((name, v));
        self
    }
    pub fn set(&mut self, name: &'static str, v: Value) {
        self.names.push((name, v));
    }
    pub fn into_value(self) -> Value {
        Value::from_object(self)
    }
}

impl Object for Scope {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let k = key.as_str()?;
        if let Some((_, v)) = self.names.iter().rev().find(|(n, _)| *n == k) {
            return Some(v.clone());
        }
        self.parent
            .as_ref()
            .and_then(|p| p.get_attr(k).ok())
            .filter(|v| !v.is_undefined())
    }
}

/// A scope with one extra name bound, by a name not known at compile time (`$as`).
#[derive(Debug)]
pub struct Bind {
    pub name: Arc<str>,
    pub value: Value,
    pub parent: Value,
}

impl Object for Bind {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let k = key.as_str()?;
        if k == &*self.name {
            return Some(self.value.clone());
        }
        self.parent.get_attr(k).ok().filter(|v| !v.is_undefined())
    }
}

/// Any serialisable value as an expression value.
pub fn to_value<T: serde::Serialize>(t: &T) -> Value {
    Value::from(minijinja::value::Serde(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::SourceFile;

    fn eval(src: &str, ctx: Value) -> Result<Value, String> {
        let file = SourceFile::new("test.toml".into(), src.to_string());
        Expr::compile(&file, &(0..src.len()), src)
            .map_err(|p| p.message)?
            .eval(&ctx)
    }

    fn s(src: &str) -> String {
        eval(src, Value::UNDEFINED).unwrap().to_string()
    }

    #[test]
    fn dt_formats_in_china_time() {
        assert_eq!(
            s("'2026-03-16T01:15:00Z' | dt('%Y-%m-%d %H:%M:%S')"),
            "2026-03-16 09:15:00"
        );
        assert_eq!(s("'2026-03-15' | dt('%Y%m%d')"), "20260315");
        assert_eq!(s("'08:30' | dt('%H%M')"), "0830");
        assert!(eval("'yesterday' | dt('%Y')", Value::UNDEFINED).is_err());
        assert!(
            eval("'08:30' | dt('%Y')", Value::UNDEFINED).is_err(),
            "a time of day has no year"
        );
    }

    #[test]
    fn parse_time_reads_local_department_times() {
        assert_eq!(
            s("'20260316092011' | parse_time('%Y%m%d%H%M%S')"),
            "2026-03-16T09:20:11+08:00"
        );
        assert_eq!(
            s("'2026-03-16T01:21:00Z' | parse_time"),
            "2026-03-16T09:21:00+08:00"
        );
        assert!(
            eval("'' | parse_time('%Y')", Value::UNDEFINED)
                .unwrap()
                .is_undefined()
        );
        assert!(
            eval(
                "'16/03/2026' | parse_time('%Y%m%d%H%M%S')",
                Value::UNDEFINED
            )
            .is_err()
        );
    }

    #[test]
    fn code_looks_up_with_default_and_fails_without() {
        let codes = Value::from_pairs([
            ("t", Value::from_pairs([("1", "M"), ("*", "X")])),
            ("u", Value::from_pairs([("1", "M")])),
        ]);
        let ctx = Scope::new(None).with("__codes", codes).into_value();
        assert_eq!(
            eval("'1' | code('t')", ctx.clone()).unwrap().to_string(),
            "M"
        );
        assert_eq!(
            eval("'7' | code('t')", ctx.clone()).unwrap().to_string(),
            "X"
        );
        let err = eval("'7' | code('u')", ctx.clone()).unwrap_err();
        assert!(err.contains("`7` is not in code table `u`"), "{err}");
        assert!(
            eval("'1' | code('nope')", ctx)
                .unwrap_err()
                .contains("unknown code table")
        );
    }

    #[test]
    fn hashes_match_published_vectors() {
        // SM3 of "abc" (GB/T 32905-2016, appendix A).
        assert_eq!(
            s("sm3_hex('abc')"),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(s("md5_hex('abc')"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            s("sha256_hex('')"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            s("hmac_sha256_hex('Jefe', 'what do ya want for nothing?')"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sm4_matches_the_standard_vector_and_round_trips() {
        // GB/T 32907-2016 example 1: key = plaintext = 0123456789abcdeffedcba9876543210; the
        // first block of our output is that vector's ciphertext (PKCS#7 adds a second block).
        let plain = hex::decode("0123456789abcdeffedcba9876543210").unwrap();
        let ctx = Scope::new(None)
            .with("p", Value::from_bytes(plain))
            .into_value();
        let b64 = eval("sm4_encrypt('0123456789abcdeffedcba9876543210', p)", ctx)
            .unwrap()
            .to_string();
        let ct = B64.decode(b64).unwrap();
        assert_eq!(hex::encode(&ct[..16]), "681edf34d206965e86b3e94f536e4246");
        assert_eq!(ct.len(), 32);
        assert_eq!(
            s(
                "sm4_decrypt('0123456789abcdeffedcba9876543210', sm4_encrypt('0123456789abcdeffedcba9876543210', '新生儿'))"
            ),
            "新生儿"
        );
        assert!(
            eval(
                "sm4_decrypt('0123456789abcdeffedcba9876543210', 'AAAA')",
                Value::UNDEFINED
            )
            .is_err()
        );
        assert!(
            eval("sm4_encrypt('0123', 'x')", Value::UNDEFINED)
                .unwrap_err()
                .contains("16 bytes")
        );
    }

    #[test]
    fn ct_eq_compares_whole_strings() {
        let t = |src: &str| eval(src, Value::UNDEFINED).unwrap().is_true();
        assert!(t("ct_eq('abc', 'abc')"));
        assert!(!t("ct_eq('abc', 'ABC')"));
        assert!(!t("ct_eq('abc', 'abd')"));
        assert!(!t("ct_eq('abc', 'abcd')"));
        assert!(!t("ct_eq(none, none)"));
    }

    #[test]
    fn find_reaches_into_envelopes() {
        let tree = to_value(
            &serde_json::json!({"Envelope": {"Body": {"XResponse": {"Result": {"Code": "0000"}}}}}),
        );
        let ctx = Scope::new(None).with("a", tree).into_value();
        assert_eq!(
            eval("find(a, 'Result').Code", ctx.clone())
                .unwrap()
                .to_string(),
            "0000"
        );
        assert!(eval("find(a, 'Fault')", ctx).unwrap().is_undefined());
    }

    #[test]
    fn fixed_writes_decimals() {
        assert_eq!(s("60 | fixed(2)"), "60.00");
        assert_eq!(s("118.625 | fixed(1)"), "118.6");
        assert_eq!(s("'40' | fixed(2)"), "40.00");
    }
}
