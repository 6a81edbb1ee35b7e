//! `application/x-www-form-urlencoded` bodies.

use crate::mapping::template::Out;

/// Encodes the top-level fields of a document as a form; nested values are an error.
pub fn write(out: &Out) -> Result<String, String> {
    let Out::Obj(fields) = out else {
        return Err("a form body must be a table of fields".into());
    };
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        let text = v
            .scalar_text()
            .ok_or_else(|| format!("form field `{k}` must be a single value"))?;
        ser.append_pair(k, &text);
    }
    Ok(ser.finish())
}

/// Parses a form into a JSON object of strings (last value wins).
pub fn parse(text: &str) -> serde_json::Value {
    let map = form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    serde_json::Value::Object(map)
}
