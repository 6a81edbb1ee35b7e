//! JSON: a rendered document to compact JSON text, fields in mapping order.

use crate::mapping::template::Out;

pub fn write(out: &Out) -> String {
    let mut s = String::with_capacity(256);
    write_into(out, &mut s);
    s
}

fn write_into(out: &Out, s: &mut String) {
    match out {
        Out::Null => s.push_str("null"),
        Out::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Out::Int(i) => s.push_str(&i.to_string()),
        Out::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => {
                let t = n.to_string();
                s.push_str(&t);
            }
            None => s.push_str("null"),
        },
        Out::Str(v) => string(v, s),
        Out::Arr(items) => {
            s.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                write_into(x, s);
            }
            s.push(']');
        }
        Out::Obj(fields) => {
            s.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                string(k, s);
                s.push(':');
                write_into(v, s);
            }
            s.push('}');
        }
    }
}

fn string(v: &str, s: &mut String) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
}

/// Parses an answer into a value that expressions can read.
pub fn parse(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("answer is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_field_order_and_number_kinds() {
        let out = Out::Obj(vec![
            ("z".into(), Out::Int(3400)),
            ("a".into(), Out::Float(50.0)),
            ("m".into(), Out::Arr(vec![Out::Bool(false), Out::Null])),
        ]);
        assert_eq!(write(&out), r#"{"z":3400,"a":50.0,"m":[false,null]}"#);
    }

    proptest! {
        #[test]
        fn any_string_round_trips(s in "\\PC*|[\\x00-\\x1f\"\\\\]*") {
            let text = write(&Out::Str(s.clone()));
            let back: String = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
