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
    s.push_str(&format!("</{op}></{env_prefix}:Body></{env_prefix}:Envelope>"));
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
            s.push_str(&partial_escape(&other.scalar_text().unwrap_or_default()));
            Ok(())
        }
    }
}

fn element(name: &str, v: &Out, style: &XmlStyle, s: &mut String) -> Result<(), String> {
    if let Out::Arr(items) = v {
        for item in items {
            if matches!(item, Out::Arr(_)) {
                return Err(format!("`{name}`: a list of lists cannot be written as XML"));
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
