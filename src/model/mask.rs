//! Masking personal data for logs: identity numbers (`4102**********0011`), phone numbers
//! (`138****0000`) and names (`张*`). Logs carry case ids, items and departments, never bodies;
//! free text that may quote a body (an error message) goes through [`mask_text`].

use std::sync::LazyLock;

use regex::Regex;

static ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{4})\d{10}(\d{3}[\dXx])\b").expect("valid"));
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(1[3-9]\d)\d{4}(\d{4})\b").expect("valid"));

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
    let s = ID.replace_all(s, "${1}**********${2}");
    PHONE.replace_all(&s, "${1}****${2}").into_owned()
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
}
