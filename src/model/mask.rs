//! Masking personal data for logs: identity numbers (`4102**********0011`), phone numbers
//! (`138****0000`) and names (`张*`). Logs carry case ids, items and departments, never bodies;
//! free text that may quote a body (an error message) goes through [`mask_text`] (every log line
//! does, in the daemon's writer), and through [`Personal::mask`] where the case is known, which
//! also masks the names of the case's people.

use std::sync::LazyLock;

use regex::Regex;

// ASCII word boundaries: a number right after a Chinese character (`电话13800000000`) is still
// a number of its own. The optional `digit.` in front (group 1) recognises the fraction of a
// decimal number (`"ms":25.13812345678`), which is left as it is: masked, it broke the JSON line.
static ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(\d\.)?(?-u:\b)(\d{4})\d{10}(\d{3}[\dXx])(?-u:\b)").expect("valid")
});
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\d\.)?(?-u:\b)(1[3-9]\d)\d{4}(\d{4})(?-u:\b)").expect("valid"));

/// An identity number: the first 4 and last 4 characters kept.
pub fn id_number(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..4].iter().collect();
    out.push_str(&"*".repeat(chars.len() - 8));
    out.extend(&chars[chars.len() - 4..]);
    out
}

/// A name: the first character kept.
pub fn name(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count().max(1))),
        None => String::new(),
    }
}

/// Masks identity and phone numbers wherever they appear in `s`.
pub fn mask_text(s: &str) -> String {
    let s = ID.replace_all(s, |c: &regex::Captures| masked(c, "**********"));
    PHONE
        .replace_all(&s, |c: &regex::Captures| masked(c, "****"))
        .into_owned()
}

/// A match of `ID` or `PHONE` with its middle replaced by `stars`; a decimal fraction as it is.
fn masked(c: &regex::Captures, stars: &str) -> String {
    if c.get(1).is_some() {
        return c[0].to_string();
    }
    format!("{}{stars}{}", &c[2], &c[3])
}

/// Keys that make an object of a submission a person: it has a `name` and one of these.
const PERSON_KEYS: &[&str] = &["id_number", "id_type", "gender", "birth_date", "phone"];

/// The personal names of one case (every object with a `name` beside an identity number,
/// gender, birth date or phone: the applicant, a child, a parent, a seller…), for masking text
/// that may quote them.
#[derive(Debug, Default, Clone)]
pub struct Personal {
    names: Vec<String>,
}

impl Personal {
    pub fn of(submission: &serde_json::Value) -> Personal {
        let mut names = Vec::new();
        collect(submission, &mut names);
        // Longest first, so that a name containing another is masked whole.
        names.sort_by_key(|n: &String| std::cmp::Reverse(n.chars().count()));
        names.dedup();
        Personal { names }
    }

    /// Identity numbers, phones and this case's names masked.
    pub fn mask(&self, text: &str) -> String {
        let mut out = mask_text(text);
        for n in &self.names {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), &name(n));
            }
        }
        out
    }
}

fn collect(v: &serde_json::Value, names: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(n) = m.get("name").and_then(|n| n.as_str())
                && PERSON_KEYS.iter().any(|k| m.contains_key(*k))
                && !n.trim().is_empty()
            {
                names.push(n.trim().to_string());
            }
            m.values().for_each(|x| collect(x, names));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_as_runtime_md_shows() {
        assert_eq!(id_number("410225199506120011"), "4102**********0011");
        assert_eq!(name("张三"), "张*");
        assert_eq!(name("王子涵"), "王**");
        assert_eq!(
            mask_text("mother 410225199506120022 phone 13800000000 at 13:00"),
            "mother 4102**********0022 phone 138****0000 at 13:00"
        );
        assert_eq!(
            mask_text("id 41022519950612002X."),
            "id 4102**********002X."
        );
    }

    #[test]
    fn a_decimal_fraction_is_not_a_number_to_mask() {
        // A log line's float whose fraction has a phone's or an identity number's digits: masked,
        // the line was no longer JSON.
        let line = r#"{"ms":25.13812345678,"secs":0.410225199506120022,"phone":"13800000000"}"#;
        let masked = mask_text(line);
        assert_eq!(
            masked,
            r#"{"ms":25.13812345678,"secs":0.410225199506120022,"phone":"138****0000"}"#
        );
        assert!(serde_json::from_str::<serde_json::Value>(&masked).is_ok());
        // A phone after a full stop that follows no digit is still masked.
        assert_eq!(mask_text("Tel.13800000000"), "Tel.138****0000");
    }

    #[test]
    fn names_of_the_case_are_masked_inside_bodies() {
        let sub = serde_json::json!({
            "applicant": {"name": "陈𠈌", "id_number": "410225198808080017", "phone": "13603789999"},
            "form": {
                "seller": {"name": "刘芳", "id_type": "111", "id_number": "410225197001010048"},
                "child": {"name": "王子涵", "gender": "2", "birth_date": "2026-03-10"}
            },
            "materials": [{"name": "存量房买卖合同", "kind": "sale_contract"}]
        });
        let p = Personal::of(&sub);
        let body = r#"{"code":"E12","msg":"卖方刘芳(410225197001010048)与买方陈𠈌不符, 新生儿王子涵, 电话13603789999, 存量房买卖合同"}"#;
        let masked = p.mask(body);
        for clear in [
            "刘芳",
            "陈𠈌",
            "王子涵",
            "410225197001010048",
            "13603789999",
        ] {
            assert!(!masked.contains(clear), "{clear} in clear: {masked}");
        }
        assert!(masked.contains("刘*") && masked.contains("陈*") && masked.contains("王**"));
        assert!(masked.contains("4102**********0048") && masked.contains("136****9999"));
        // A material's name is not a person's.
        assert!(masked.contains("存量房买卖合同"));
    }
}
