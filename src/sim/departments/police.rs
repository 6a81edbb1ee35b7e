//! 县公安局 户政/治安业务系统 一件事 WebService v1.6 (`police`): SOAP 1.1 in GB18030 at
//! `/services/YjsService`, credentials in a SOAP header, at most 2 requests at a time and about 20
//! a second; not connected (state is polled with `QueryStatus`).
//!
//! Elements are matched by namespace (`urn:yjs:police`) and local name, whatever the prefix: the
//! request is read with a namespace-resolving reader, so an operation in another namespace is
//! refused as `报文格式错误`.
//!
//! Test hook: `POST /_sim/hold` makes every admitted request wait (up to 10 s) until
//! `POST /_sim/release`, so that tests can hold two requests in flight and watch a third one get
//! `系统繁忙` without relying on timing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use indexmap::IndexMap;
use quick_xml::NsReader;
use quick_xml::escape::{partial_escape, resolve_xml_entity};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::common::{fmt, header, is_ethnicity, push_fails, rule};
use crate::codec::xml::SOAP_ENV_NS;
use crate::config::department::Charset;
use crate::sim::behaviour::{DENY_REASON, Phase, REJECT_REASON};
use crate::sim::results::{citizen_id, digits};
use crate::sim::world::{App, Refusal, Submitted, View};
use crate::sim::{Concurrency, Ctx};
use crate::validate::ids::{gb11643_valid, gb32100_valid};

/// The service namespace.
const NS: &str = "urn:yjs:police";
/// The county whose police this is (citizen ids and household numbers start with it).
const DIVISION: &str = "410225";
const MAX_CONCURRENT: u64 = 2;
const MAX_PER_SECOND: usize = 20;
/// The longest a held request waits for `/_sim/release`.
const HOLD_MAX: Duration = Duration::from_secs(10);

const BUSY: &str = "系统繁忙";
const AUTH_FAILED: &str = "认证失败";
const MALFORMED: &str = "报文格式错误";

const SXBM_HUKOU: &str = "GA-HJ-CSDJ";
const SXBM_SEAL: &str = "GA-ZA-GZKZ";

/// The elements of each operation, in the document's order (`YZ` is the one repeated element).
const HUKOU_ELEMENTS: &[&str] = &[
    "SBLSH", "SXBM", "XM", "XB", "MZ", "CSRQ", "CSSJ", "CSDD", "CSYXZMBH", "MQXM", "MQSFZH",
    "FQXM", "FQSFZH", "HZXM", "YHZGX", "LHDZ", "LXDH",
];
const SEAL_ELEMENTS: &[&str] = &[
    "SBLSH",
    "SXBM",
    "DWMC",
    "TYSHXYDM",
    "FDDBR",
    "FDDBRSFZH",
    "YZ",
    "DWDZ",
    "LXDH",
];
const QUERY_ELEMENTS: &[&str] = &["SBLSH", "SXBM"];
const WITHDRAW_ELEMENTS: &[&str] = &["SBLSH", "SXBM", "CHYY"];

/// The simulator's own state besides the shared world.
struct Police {
    ctx: Ctx,
    /// When the requests of the last second were admitted.
    recent: Mutex<VecDeque<Instant>>,
    /// While true, admitted requests wait (test hook).
    hold: watch::Sender<bool>,
    /// The withdrawal reason (`CHYY`) by department reference.
    reasons: Mutex<HashMap<String, String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Police {
    /// Takes a request into the per-second budget; false when the last second is full.
    fn admit(&self) -> bool {
        let mut q = lock(&self.recent);
        let now = Instant::now();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            q.pop_front();
        }
        if q.len() >= MAX_PER_SECOND {
            return false;
        }
        q.push_back(now);
        true
    }

    async fn wait_while_held(&self) {
        let mut rx = self.hold.subscribe();
        let _ = tokio::time::timeout(HOLD_MAX, rx.wait_for(|held| !*held)).await;
    }
}

pub fn router(ctx: Ctx) -> Router {
    let (hold, _) = watch::channel(false);
    let police = Arc::new(Police {
        ctx,
        recent: Mutex::new(VecDeque::new()),
        hold,
        reasons: Mutex::new(HashMap::new()),
    });
    let (h1, h2) = (police.clone(), police.clone());
    Router::new()
        .route("/services/YjsService", post(service))
        .route(
            "/_sim/hold",
            post(move || async move {
                h1.hold.send_replace(true);
                "held"
            }),
        )
        .route(
            "/_sim/release",
            post(move || async move {
                h2.hold.send_replace(false);
                "released"
            }),
        )
        .with_state(police)
}

// ---------------------------------------------------------------------------------------------
// Answers: GB18030 with the prolog.

fn reply(status: StatusCode, xml: &str) -> Response {
    (
        status,
        [(CONTENT_TYPE, "text/xml; charset=GB18030")],
        Charset::Gb18030.encode_xml(xml),
    )
        .into_response()
}

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB18030\"?>\n\
         <soap:Envelope xmlns:soap=\"{SOAP_ENV_NS}\" xmlns:ga=\"{NS}\"><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

/// A SOAP fault (HTTP 500); `detail` says what exactly was wrong.
fn fault(code: &str, string: &str, detail: &str) -> Response {
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(
            "<detail><ga:Reason>{}</ga:Reason></detail>",
            partial_escape(detail)
        )
    };
    let body = format!(
        "<soap:Fault><faultcode>soap:{code}</faultcode><faultstring>{string}</faultstring>{detail}</soap:Fault>"
    );
    reply(StatusCode::INTERNAL_SERVER_ERROR, &envelope(&body))
}

/// `<ga:<op>Response><ga:Result>…</ga:Result></ga:<op>Response>`; empty values as empty elements.
fn result(op: &str, fields: &[(&str, &str)]) -> Response {
    let mut inner = String::new();
    for (name, value) in fields {
        if value.is_empty() {
            inner.push_str(&format!("<ga:{name}/>"));
        } else {
            inner.push_str(&format!(
                "<ga:{name}>{}</ga:{name}>",
                partial_escape(*value)
            ));
        }
    }
    let body = format!("<ga:{op}Response><ga:Result>{inner}</ga:Result></ga:{op}Response>");
    reply(StatusCode::OK, &envelope(&body))
}

// ---------------------------------------------------------------------------------------------
// The request, read with namespaces resolved.

#[derive(Debug, Default)]
struct Elem {
    ns: Option<String>,
    name: String,
    text: String,
    children: Vec<Elem>,
}

impl Elem {
    fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }

    fn child(&self, ns: &str, name: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// The element as JSON keyed by local names (repeated elements as lists), for `/_sim/received`.
    fn to_json(&self) -> Value {
        if self.children.is_empty() {
            return Value::String(self.text.clone());
        }
        let mut m = Map::new();
        for c in &self.children {
            let v = c.to_json();
            match m.get_mut(&c.name) {
                Some(Value::Array(list)) if c.name == "YZ" => list.push(v),
                Some(_) => {}
                None if c.name == "YZ" => {
                    m.insert(c.name.clone(), Value::Array(vec![v]));
                }
                None => {
                    m.insert(c.name.clone(), v);
                }
            }
        }
        Value::Object(m)
    }
}

fn parse(text: &str) -> Result<Elem, String> {
    let mut reader = NsReader::from_str(text);
    let mut stack = vec![Elem::default()];
    loop {
        let (ns, ev) = reader
            .read_resolved_event()
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        let ns = match ns {
            ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(format!(
                    "undeclared namespace prefix `{}`",
                    String::from_utf8_lossy(&p)
                ));
            }
        };
        let top = stack.last_mut().ok_or("unbalanced XML")?;
        match &ev {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                stack.push(Elem {
                    ns,
                    name,
                    ..Elem::default()
                });
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| format!("bad text: {e}"))?;
                top.text.push_str(&s);
            }
            Event::CData(c) => top.text.push_str(&String::from_utf8_lossy(c.as_ref())),
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| format!("bad reference: {e}"))?;
                let ch = r
                    .resolve_char_ref()
                    .map_err(|e| format!("bad character reference: {e}"))?
                    .map(String::from)
                    .or_else(|| resolve_xml_entity(&name).map(String::from))
                    .ok_or_else(|| format!("unknown entity &{name};"))?;
                top.text.push_str(&ch);
            }
            Event::DocType(_) => return Err("DOCTYPE is not allowed".into()),
            Event::Eof => break,
            _ => {}
        }
        if matches!(ev, Event::End(_) | Event::Empty(_)) {
            let el = stack.pop().ok_or("unbalanced XML")?;
            stack.last_mut().ok_or("unbalanced XML")?.children.push(el);
        }
    }
    let [doc] = <[Elem; 1]>::try_from(stack).map_err(|_| "XML ends early")?;
    let [root] = <[Elem; 1]>::try_from(doc.children).map_err(|_| "not one root element")?;
    Ok(root)
}

/// The `encoding` of the XML prolog, if there is a prolog.
fn prolog_encoding(bytes: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    let decl = head.strip_prefix("<?xml")?;
    let decl = &decl[..decl.find("?>")?];
    let i = decl.find("encoding")?;
    let rest = decl[i + 8..].trim_start().strip_prefix('=')?.trim_start();
    let q = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    Some(rest[..rest.find(q)?].to_string())
}

/// Why a request was refused before its operation was looked at.
enum Refused {
    /// `soap:Client` `报文格式错误`, with the detail.
    Malformed(String),
    /// `soap:Client` `认证失败`.
    Auth(String),
}

/// Checks the transport (content type, prolog, GB18030), the envelope, the SOAPAction and the
/// credentials; gives the operation element.
fn unwrap_request(p: &Police, h: &HeaderMap, body: &[u8]) -> Result<Elem, Refused> {
    use Refused::{Auth, Malformed};
    let ct = header(h, "content-type");
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, c)| c.trim().trim_matches('"').to_string());
    if !media.eq_ignore_ascii_case("text/xml") {
        return Err(Malformed(format!("Content-Type `{ct}` is not text/xml")));
    }
    if !charset.is_some_and(|c| c.eq_ignore_ascii_case("GB18030")) {
        return Err(Malformed(format!(
            "Content-Type `{ct}` does not declare charset=GB18030"
        )));
    }
    match prolog_encoding(body) {
        Some(e) if e.eq_ignore_ascii_case("GB18030") => {}
        Some(e) => {
            return Err(Malformed(format!(
                "the XML prolog declares encoding `{e}`, not GB18030"
            )));
        }
        None => {
            return Err(Malformed(
                "no XML prolog declaring encoding=\"GB18030\"".into(),
            ));
        }
    }
    let text = Charset::Gb18030
        .decode(body)
        .map_err(|_| Malformed("the body is not valid GB18030".into()))?;
    let mut root = parse(&text).map_err(Malformed)?;
    if !root.is(SOAP_ENV_NS, "Envelope") {
        return Err(Malformed("the root is not a SOAP 1.1 Envelope".into()));
    }
    let header_el = root
        .child(SOAP_ENV_NS, "Header")
        .ok_or_else(|| Malformed("no SOAP Header".into()))?;
    let auth = header_el
        .child(NS, "Auth")
        .ok_or_else(|| Malformed(format!("no Auth element in {NS} in the SOAP Header")))?;
    let (Some(user), Some(password)) = (auth.child(NS, "UserId"), auth.child(NS, "Password"))
    else {
        return Err(Malformed("Auth needs UserId and Password".into()));
    };
    if user.text != p.ctx.cred("USER") || password.text != p.ctx.cred("PASSWORD") {
        return Err(Auth(format!(
            "wrong UserId or Password for `{}`",
            user.text
        )));
    }
    let bodies: Vec<usize> = (0..root.children.len())
        .filter(|&i| root.children[i].is(SOAP_ENV_NS, "Body"))
        .collect();
    let [b] = bodies[..] else {
        return Err(Malformed("not exactly one SOAP Body".into()));
    };
    let mut body_el = root.children.swap_remove(b);
    if body_el.children.len() != 1 {
        return Err(Malformed(
            "the SOAP Body must hold exactly one operation".into(),
        ));
    }
    let op = body_el.children.remove(0);
    if op.ns.as_deref() != Some(NS) {
        return Err(Malformed(format!(
            "operation `{}` is not in namespace {NS}",
            op.name
        )));
    }
    if !matches!(
        op.name.as_str(),
        "SubmitHukou" | "SubmitSeal" | "QueryStatus" | "Withdraw"
    ) {
        return Err(Malformed(format!("unknown operation `{}`", op.name)));
    }
    let action = header(h, "soapaction");
    let want = format!("\"{NS}#{}\"", op.name);
    if action != want {
        return Err(Malformed(format!(
            "SOAPAction `{action}` does not match the operation (want {want})"
        )));
    }
    Ok(op)
}

/// The operation's elements: in the documented namespace and order, none unknown, only `YZ`
/// repeated, each a text element (`YZ` holding one `YZLX`). Gives name → text (`YZ` → the
/// `YZLX` values, "" for a `YZ` without one).
fn fields(op: &Elem, allowed: &[&str]) -> Result<IndexMap<String, Vec<String>>, String> {
    let mut out: IndexMap<String, Vec<String>> = IndexMap::new();
    let mut last = 0;
    for c in &op.children {
        if c.ns.as_deref() != Some(NS) {
            return Err(format!("element `{}` is not in namespace {NS}", c.name));
        }
        let Some(pos) = allowed.iter().position(|a| *a == c.name) else {
            return Err(format!("unknown element `{}` in {}", c.name, op.name));
        };
        if pos < last || (pos == last && out.contains_key(&c.name) && c.name != "YZ") {
            return Err(format!("element `{}` out of order or repeated", c.name));
        }
        last = pos;
        let value = if c.name == "YZ" {
            match &c.children[..] {
                [] => String::new(),
                [t] if t.is(NS, "YZLX") && t.children.is_empty() => t.text.clone(),
                _ => return Err("YZ holds exactly one YZLX".into()),
            }
        } else {
            if !c.children.is_empty() {
                return Err(format!("element `{}` must hold text only", c.name));
            }
            c.text.clone()
        };
        out.entry(c.name.clone()).or_default().push(value);
    }
    Ok(out)
}

/// A `Result` code and message for a refused operation.
struct Invalid(&'static str, String);

fn missing(name: &str) -> Invalid {
    Invalid("1001", format!("缺少必填项：{name}"))
}

fn wrong(name: &str) -> Invalid {
    Invalid("1002", format!("{name} 格式错误"))
}

struct Fields(IndexMap<String, Vec<String>>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Required elements present with content, in order.
    fn require(&self, names: &[&str]) -> Result<(), Invalid> {
        match names.iter().find(|n| self.get(n).is_none_or(str::is_empty)) {
            Some(n) => Err(missing(n)),
            None => Ok(()),
        }
    }

    /// Optional elements are omitted when empty, never sent empty.
    fn not_empty_if_present(&self, names: &[&str]) -> Result<(), Invalid> {
        match names.iter().find(|n| self.get(n) == Some("")) {
            Some(n) => Err(Invalid("1002", format!("{n} 为空（无值的可选元素应省略）"))),
            None => Ok(()),
        }
    }
}

fn date_ok(s: &str) -> bool {
    s.len() == 8
        && s.bytes().all(|b| b.is_ascii_digit())
        && chrono::NaiveDate::parse_from_str(s, "%Y%m%d").is_ok()
}

fn time_ok(s: &str) -> bool {
    s.len() == 4
        && s.bytes().all(|b| b.is_ascii_digit())
        && s[..2].parse::<u32>().is_ok_and(|h| h < 24)
        && s[2..].parse::<u32>().is_ok_and(|m| m < 60)
}

fn id_ok(f: &Fields, name: &str) -> Result<(), Invalid> {
    match f.get(name) {
        Some(id) if !gb11643_valid(id) => {
            Err(Invalid("1003", format!("{name} 身份证号码校验失败")))
        }
        _ => Ok(()),
    }
}

fn validate_hukou(f: &Fields) -> Result<(), Invalid> {
    f.require(&[
        "SBLSH", "SXBM", "XM", "XB", "MZ", "CSRQ", "CSSJ", "CSDD", "CSYXZMBH", "MQXM", "MQSFZH",
    ])?;
    // The father is optional, but as a pair.
    match (f.get("FQXM"), f.get("FQSFZH")) {
        (Some(_), None) => return Err(missing("FQSFZH")),
        (None, Some(_)) => return Err(missing("FQXM")),
        _ => {}
    }
    f.require(&["HZXM", "YHZGX", "LHDZ", "LXDH"])?;
    f.not_empty_if_present(&["FQXM", "FQSFZH"])?;
    if f.text("SXBM") != SXBM_HUKOU {
        return Err(wrong("SXBM"));
    }
    if !matches!(f.text("XB"), "0" | "1" | "2" | "9") {
        return Err(wrong("XB"));
    }
    if !is_ethnicity(f.text("MZ")) {
        return Err(wrong("MZ"));
    }
    if !date_ok(f.text("CSRQ")) {
        return Err(wrong("CSRQ"));
    }
    if !time_ok(f.text("CSSJ")) {
        return Err(wrong("CSSJ"));
    }
    id_ok(f, "MQSFZH")?;
    id_ok(f, "FQSFZH")
}

fn validate_seal(f: &Fields) -> Result<(), Invalid> {
    f.require(&["SBLSH", "SXBM", "DWMC", "TYSHXYDM", "FDDBR", "FDDBRSFZH"])?;
    let seals = f.0.get("YZ").cloned().unwrap_or_default();
    if seals.is_empty() {
        return Err(missing("YZ"));
    }
    if seals.iter().any(String::is_empty) {
        return Err(missing("YZLX"));
    }
    f.require(&["DWDZ", "LXDH"])?;
    if f.text("SXBM") != SXBM_SEAL {
        return Err(wrong("SXBM"));
    }
    if !gb32100_valid(f.text("TYSHXYDM")) {
        return Err(wrong("TYSHXYDM"));
    }
    if seals
        .iter()
        .any(|t| !matches!(t.as_str(), "01" | "02" | "03" | "04"))
    {
        return Err(wrong("YZLX"));
    }
    let mut seen = seals.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != seals.len() {
        return Err(Invalid("1002", "YZ 印章类型重复".into()));
    }
    id_ok(f, "FDDBRSFZH")
}

/// The item an SXBM names.
fn kind_of(sxbm: &str) -> Option<&'static str> {
    match sxbm {
        SXBM_HUKOU => Some("hukou"),
        SXBM_SEAL => Some("seal"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The service.

async fn service(
    State(p): State<Arc<Police>>,
    concurrency: Option<Extension<Concurrency>>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = &p.ctx;
    let action = header(&h, "soapaction")
        .trim_matches('"')
        .rsplit('#')
        .next()
        .unwrap_or("")
        .to_string();
    let in_flight = concurrency.map_or(1, |Extension(Concurrency(n))| n);
    let limits = ctx.config.documented_limits;
    if limits && in_flight > MAX_CONCURRENT {
        ctx.world.violation(
            ctx.dept,
            &action,
            &format!("{in_flight} requests at a time (at most {MAX_CONCURRENT})"),
        );
        return fault("Server", BUSY, "");
    }
    if limits && !p.admit() {
        ctx.world.violation(
            ctx.dept,
            &action,
            &format!("more than {MAX_PER_SECOND} requests a second"),
        );
        return fault("Server", BUSY, "");
    }
    p.wait_while_held().await;
    let op = match unwrap_request(&p, &h, &body) {
        Ok(op) => op,
        Err(Refused::Malformed(detail)) => {
            ctx.world.violation(ctx.dept, &action, &detail);
            return fault("Client", MALFORMED, &detail);
        }
        Err(Refused::Auth(detail)) => {
            ctx.world.violation(ctx.dept, &action, &detail);
            return fault("Client", AUTH_FAILED, "");
        }
    };
    let allowed = match op.name.as_str() {
        "SubmitHukou" => HUKOU_ELEMENTS,
        "SubmitSeal" => SEAL_ELEMENTS,
        "QueryStatus" => QUERY_ELEMENTS,
        _ => WITHDRAW_ELEMENTS,
    };
    let f = match fields(&op, allowed) {
        Ok(f) => Fields(f),
        Err(detail) => {
            ctx.world.violation(ctx.dept, &op.name, &detail);
            return fault("Client", MALFORMED, &detail);
        }
    };
    let answer = match op.name.as_str() {
        "SubmitHukou" | "SubmitSeal" => submit(&p, &op, &f),
        "QueryStatus" => query(&p, &f),
        _ => withdraw(&p, &op, &f),
    };
    match answer {
        Ok(r) => r,
        Err(Invalid(code, message)) => {
            ctx.world.violation(ctx.dept, &op.name, &message);
            result(&op.name, &[("Code", code), ("Message", &message)])
        }
    }
}

fn submit(p: &Police, op: &Elem, f: &Fields) -> Result<Response, Invalid> {
    let ctx = &p.ctx;
    let hukou = op.name == "SubmitHukou";
    if hukou {
        validate_hukou(f)?;
    } else {
        validate_seal(f)?;
    }
    let (kind, name) = if hukou {
        ("hukou", f.text("XM"))
    } else {
        ("seal", f.text("DWMC"))
    };
    let case_id = f.text("SBLSH");
    let b = rule(ctx, name);
    if push_fails(ctx, b, case_id, kind, &op.name) {
        return Ok(fault("Server", BUSY, ""));
    }
    let now = ctx.world.now_wall();
    let today = fmt(now, "%Y%m%d");
    let (birth, gender) = (f.text("CSRQ").to_string(), f.text("XB").to_string());
    let data = op.to_json();
    let submitted = ctx.world.submit(
        ctx.dept,
        case_id,
        kind,
        b,
        false,
        data.clone(),
        |n| format!("GA{today}{}", digits(n, 6)),
        |n| {
            if hukou {
                IndexMap::from([
                    (
                        "GMSFHM".to_string(),
                        citizen_id(DIVISION, &birth, &gender, n),
                    ),
                    ("HH".to_string(), format!("{DIVISION}{}", digits(n, 6))),
                ])
            } else {
                IndexMap::from([("BAH".to_string(), format!("BA{today}{}", digits(n, 6)))])
            }
        },
    );
    Ok(match submitted {
        Submitted::Duplicate(app) => result(
            &op.name,
            &[
                ("Code", "0001"),
                ("Message", "重复申报，已返回原业务流水号"),
                ("YWLSH", &app.reference),
            ],
        ),
        Submitted::New(app) => {
            ctx.world.received(ctx.dept, &op.name, data);
            result(
                &op.name,
                &[
                    ("Code", "0000"),
                    ("Message", "接收成功"),
                    ("YWLSH", &app.reference),
                ],
            )
        }
    })
}

/// `BJZT` and `BJZTMC` of a phase.
fn bjzt(phase: &Phase) -> (&'static str, &'static str) {
    match phase {
        Phase::Received | Phase::PrecheckPassed => ("01", "已接件"),
        Phase::Accepted => ("03", "已受理"),
        Phase::Rejected | Phase::PrecheckFailed => ("04", "不予受理"),
        Phase::Approved | Phase::Denied => ("11", "办结"),
        Phase::Withdrawn => ("12", "已撤回"),
    }
}

/// The `Result` of `QueryStatus` for an application.
fn status_fields(p: &Police, app: &App, view: &View) -> Vec<(&'static str, String)> {
    let t = |t: chrono::DateTime<chrono::FixedOffset>| fmt(t, "%Y%m%d%H%M%S");
    let (code, name) = bjzt(&view.phase);
    let result = |k: &str| app.results.get(k).cloned().unwrap_or_default();
    let (bjjg, yy, finished) = match view.phase {
        Phase::Rejected | Phase::PrecheckFailed => ("", REJECT_REASON.to_string(), true),
        Phase::Approved => ("0", String::new(), true),
        Phase::Denied => ("1", DENY_REASON.to_string(), true),
        Phase::Withdrawn => {
            let reason = lock(&p.reasons)
                .get(&app.reference)
                .cloned()
                .unwrap_or_else(|| "申请人撤回".into());
            ("", reason, true)
        }
        _ => ("", String::new(), false),
    };
    let approved = view.phase == Phase::Approved;
    let hukou = app.kind == "hukou";
    vec![
        ("Code", "0000".into()),
        ("Message", "查询成功".into()),
        ("BJZT", code.into()),
        ("BJZTMC", name.into()),
        ("SLSJ", view.accepted_at.map(t).unwrap_or_default()),
        (
            "BJSJ",
            if finished {
                t(view.phase_at)
            } else {
                String::new()
            },
        ),
        ("BJJG", bjjg.into()),
        ("YY", yy),
        (
            "GMSFHM",
            if approved && hukou {
                result("GMSFHM")
            } else {
                String::new()
            },
        ),
        (
            "HH",
            if approved && hukou {
                result("HH")
            } else {
                String::new()
            },
        ),
        (
            "BAH",
            if approved && !hukou {
                result("BAH")
            } else {
                String::new()
            },
        ),
    ]
}

fn query(p: &Police, f: &Fields) -> Result<Response, Invalid> {
    const OP: &str = "QueryStatus";
    let ctx = &p.ctx;
    f.require(&["SBLSH", "SXBM"])?;
    let kind = kind_of(f.text("SXBM")).ok_or_else(|| wrong("SXBM"))?;
    ctx.world.count(ctx.dept, |s| s.queries += 1);
    let Some(app) = ctx.world.find(ctx.dept, f.text("SBLSH"), kind) else {
        return Ok(result(OP, &[("Code", "0404"), ("Message", "无此申报")]));
    };
    let fields = status_fields(p, &app, &ctx.world.view(&app));
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(result(OP, &pairs))
}

fn withdraw(p: &Police, op: &Elem, f: &Fields) -> Result<Response, Invalid> {
    const OP: &str = "Withdraw";
    let ctx = &p.ctx;
    f.require(&["SBLSH", "SXBM", "CHYY"])?;
    let kind = kind_of(f.text("SXBM")).ok_or_else(|| wrong("SXBM"))?;
    let not_found = || result(OP, &[("Code", "0404"), ("Message", "无此申报")]);
    let Some(app) = ctx.world.find(ctx.dept, f.text("SBLSH"), kind) else {
        return Ok(not_found());
    };
    Ok(match ctx.world.withdraw(ctx.dept, &app.reference) {
        Ok(app) => {
            lock(&p.reasons)
                .entry(app.reference.clone())
                .or_insert_with(|| f.text("CHYY").to_string());
            ctx.world.received(ctx.dept, OP, op.to_json());
            result(OP, &[("Code", "0000"), ("Message", "撤回成功")])
        }
        Err(Refusal::Finished) => result(OP, &[("Code", "2001"), ("Message", "已办结，不能撤回")]),
        Err(_) => not_found(),
    })
}
