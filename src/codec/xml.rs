//! XML and SOAP 1.1: rendered documents to XML text (escaped by quick-xml, one element per field,
//! arrays as repeated elements), and any XML answer back to a tree of values keyed by local name
//! (namespaces and prefixes dropped, repeated elements as lists, empty elements as `""`).

use quick_xml::Reader;
use quick_xml::escape::partial_escape;
use quick_xml::events::Event;
use serde_json::{Map, Value};

use crate::config::department::Charset;
use crate::mapping::template::Out;

pub const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// How element names are written.
#[derive(Debug, Clone, Default)]
pub struct XmlStyle {
    pub prefix: Option<String>,
    pub namespace: Option<String>,
}

impl XmlStyle {
    fn name(&self, local: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}:{local}"),
            None => local.to_string(),
        }
    }

    fn xmlns(&self) -> String {
        match (&self.prefix, &self.namespace) {
            (Some(p), Some(ns)) => format!(" xmlns:{p}=\"{}\"", partial_escape(ns)),
            (None, Some(ns)) => format!(" xmlns=\"{}\"", partial_escape(ns)),
            _ => String::new(),
        }
    }
}

pub fn declaration(charset: Charset) -> String {
    format!("<?xml version=\"1.0\" encoding=\"{}\"?>\n", charset.label())
}

/// A plain document: `<root>…</root>`.
pub fn write_document(root: &str, style: &XmlStyle, body: &Out) -> Result<String, String> {
    let mut s = String::with_capacity(512);
    let name = style.name(root);
    s.push('<');
    s.push_str(&name);
    s.push_str(&style.xmlns());
    s.push('>');
    children(body, style, &mut s)?;
    s.push_str("</");
    s.push_str(&name);
    s.push('>');
    Ok(s)
}

/// A SOAP 1.1 envelope whose body holds `<operation>…</operation>` in the service namespace.
pub fn write_soap(
    env_prefix: &str,
    operation: &str,
    style: &XmlStyle,
    header: Option<&Out>,
    body: &Out,
) -> Result<String, String> {
    let mut s = String::with_capacity(1024);
    s.push_str(&format!(
        "<{env_prefix}:Envelope xmlns:{env_prefix}=\"{SOAP_ENV_NS}\"{}>",
        style.xmlns()
    ));
    if let Some(h) = header {
        s.push_str(&format!("<{env_prefix}:Header>"));
        children(h, style, &mut s)?;
        s.push_str(&format!("</{env_prefix}:Header>"));
    }
    s.push_str(&format!("<{env_prefix}:Body>"));
    let op = style.name(operation);
    s.push_str(&format!("<{op}>"));
    children(body, style, &mut s)?;
    s.push_str(&format!(
        "</{op}></{env_prefix}:Body></{env_prefix}:Envelope>"
    ));
    Ok(s)
}

fn children(out: &Out, style: &XmlStyle, s: &mut String) -> Result<(), String> {
    match out {
        Out::Obj(fields) => {
            for (k, v) in fields {
                element(k, v, style, s)?;
            }
            Ok(())
        }
        other => {
            s.push_str(&partial_escape(other.scalar_text().unwrap_or_default()));
            Ok(())
        }
    }
}

fn element(name: &str, v: &Out, style: &XmlStyle, s: &mut String) -> Result<(), String> {
    if let Out::Arr(items) = v {
        for item in items {
            if matches!(item, Out::Arr(_)) {
                return Err(format!(
                    "`{name}`: a list of lists cannot be written as XML"
                ));
            }
            element(name, item, style, s)?;
        }
        return Ok(());
    }
    let n = style.name(name);
    s.push('<');
    s.push_str(&n);
    s.push('>');
    children(v, style, s)?;
    s.push_str("</");
    s.push_str(&n);
    s.push('>');
    Ok(())
}

/// Parses XML text (already decoded) into `{root: tree}`.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    // Stack of (local name, children, text).
    let mut stack: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("answer is not well-formed XML: {e}"))?;
        match ev {
            Event::Start(e) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                stack.push((local, Map::new(), String::new()));
            }
            Event::Empty(e) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                close(&mut stack, &mut root, local, Map::new(), String::new());
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let raw = t.decode().map_err(|e| format!("bad text: {e}"))?;
                    top.2.push_str(&raw);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                    top.2.push_str(&resolve_ref(&name)?);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.2.push_str(&String::from_utf8_lossy(c.as_ref()));
                }
            }
            Event::End(_) => {
                let (name, kids, text) = stack.pop().ok_or("unbalanced XML")?;
                close(&mut stack, &mut root, name, kids, text);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("answer XML ends early".into());
    }
    let (name, tree) = root.ok_or("answer has no XML element")?;
    let mut m = Map::new();
    m.insert(name, tree);
    Ok(Value::Object(m))
}

fn resolve_ref(name: &str) -> Result<String, String> {
    let ch = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        n if n.starts_with("#x") || n.starts_with("#X") => u32::from_str_radix(&n[2..], 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| format!("bad character reference &{n};"))?,
        n if n.starts_with('#') => n[1..]
            .parse::<u32>()
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| format!("bad character reference &{n};"))?,
        n => return Err(format!("unknown entity &{n};")),
    };
    Ok(ch.to_string())
}

fn close(
    stack: &mut [(String, Map<String, Value>, String)],
    root: &mut Option<(String, Value)>,
    name: String,
    kids: Map<String, Value>,
    text: String,
) {
    let value = if kids.is_empty() {
        Value::String(text)
    } else {
        Value::Object(kids)
    };
    match stack.last_mut() {
        Some(parent) => match parent.1.get_mut(&name) {
            Some(Value::Array(list)) => list.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                parent.1.insert(name, value);
            }
        },
        None => *root = Some((name, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obj(fields: &[(&str, Out)]) -> Out {
        Out::Obj(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn writes_prefixed_soap_with_header_and_repeated_elements() {
        let style = XmlStyle {
            prefix: Some("ga".into()),
            namespace: Some("urn:yjs:police".into()),
        };
        let header = obj(&[("Auth", obj(&[("UserId", Out::Str("yjs".into()))]))]);
        let body = obj(&[
            ("DWMC", Out::Str("A&B <公司>".into())),
            (
                "YZ",
                Out::Arr(vec![
                    obj(&[("YZLX", Out::Str("01".into()))]),
                    obj(&[("YZLX", Out::Str("02".into()))]),
                ]),
            ),
        ]);
        let s = write_soap("soap", "SubmitSeal", &style, Some(&header), &body).unwrap();
        assert_eq!(
            s,
            "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:ga=\"urn:yjs:police\">\
             <soap:Header><ga:Auth><ga:UserId>yjs</ga:UserId></ga:Auth></soap:Header>\
             <soap:Body><ga:SubmitSeal><ga:DWMC>A&amp;B &lt;公司&gt;</ga:DWMC>\
             <ga:YZ><ga:YZLX>01</ga:YZLX></ga:YZ><ga:YZ><ga:YZLX>02</ga:YZLX></ga:YZ>\
             </ga:SubmitSeal></soap:Body></soap:Envelope>"
        );
    }

    #[test]
    fn parses_soap_fault_by_local_name() {
        let v = parse("<soap:Envelope xmlns:soap=\"x\"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>系统繁忙</faultstring></soap:Fault></soap:Body></soap:Envelope>").unwrap();
        assert_eq!(v["Envelope"]["Body"]["Fault"]["faultcode"], "soap:Server");
        assert_eq!(v["Envelope"]["Body"]["Fault"]["faultstring"], "系统繁忙");
    }

    #[test]
    fn repeated_elements_become_lists_and_empty_elements_empty_strings() {
        let v = parse("<r><a>1</a><a>2</a><b/><c></c><d>&#x2A6A5;&amp;</d></r>").unwrap();
        assert_eq!(v["r"]["a"], serde_json::json!(["1", "2"]));
        assert_eq!(v["r"]["b"], "");
        assert_eq!(v["r"]["c"], "");
        assert_eq!(v["r"]["d"], "\u{2A6A5}&");
    }

    #[test]
    fn malformed_xml_is_an_error() {
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>").is_err());
        assert!(parse("").is_err());
    }

    proptest! {
        /// Whatever text goes in (markup characters, CJK, astral characters), parsing the written
        /// document gives it back, in every charset.
        #[test]
        fn text_round_trips_through_write_and_parse(text in "\\PC{0,40}", charset in 0..3usize) {
            let charset = [Charset::Utf8, Charset::Gb18030, Charset::Gbk][charset];
            let doc = write_document("R", &XmlStyle::default(), &obj(&[("T", Out::Str(text.clone()))])).unwrap();
            let bytes = charset.encode_xml(&(declaration(charset) + &doc));
            let decoded = crate::codec::charset::decode_body(&bytes, None).unwrap();
            let v = parse(&decoded).unwrap();
            let expected = text.replace('\r', "\n");
            prop_assert_eq!(v["R"]["T"].as_str().unwrap_or(""), expected.as_str());
        }
    }
}
