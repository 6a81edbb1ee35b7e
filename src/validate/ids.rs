//! Identity numbers: the 居民身份证 number of GB 11643-1999 (ISO 7064 MOD 11-2 check digit, birth
//! date inside) and the 统一社会信用代码 of GB 32100-2015 (MOD 31 check character).

use chrono::NaiveDate;

/// Weights of the first 17 digits of a 居民身份证 number.
const GB11643_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character by `sum mod 11`.
const GB11643_CHECK: &[u8; 11] = b"10X98765432";

/// The 31 characters of a 统一社会信用代码 (no I, O, S, V, Z); a character's value is its index.
const GB32100_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Weights of the first 17 characters of a 统一社会信用代码.
const GB32100_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// The check character (`0`–`9` or `X`) for the first 17 digits of a 居民身份证 number, or `None`
/// if `first17` is not 17 ASCII digits.
pub fn gb11643_check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = b
        .iter()
        .zip(GB11643_WEIGHTS)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    Some(GB11643_CHECK[(sum % 11) as usize] as char)
}

/// Whether `id` is 17 digits followed by their check character (the checksum alone; no date check).
pub fn gb11643_checksum_ok(id: &str) -> bool {
    id.len() == 18
        && id.is_char_boundary(17)
        && gb11643_check_char(&id[..17]).is_some_and(|c| id.ends_with(c))
}

/// What is wrong with a 居民身份证 number, as the message the platform sees; `None` if valid.
pub fn gb11643_problem(id: &str) -> Option<&'static str> {
    let b = id.as_bytes();
    let shape_ok = b.len() == 18
        && b[..17].iter().all(u8::is_ascii_digit)
        && (b[17].is_ascii_digit() || b[17] == b'X');
    if !shape_ok || !birth_date_ok(&id[6..14]) {
        return Some("not a valid 居民身份证 number");
    }
    if !gb11643_checksum_ok(id) {
        return Some("check digit mismatch");
    }
    None
}

/// An 18-character 居民身份证 number: 17 digits with a real birth date (positions 7–14) and the
/// right check character (uppercase `X` for 10).
pub fn gb11643_valid(id: &str) -> bool {
    gb11643_problem(id).is_none()
}

fn birth_date_ok(yyyymmdd: &str) -> bool {
    let n = |r: std::ops::Range<usize>| yyyymmdd.get(r).and_then(|s| s.parse::<u32>().ok());
    match (n(0..4), n(4..6), n(6..8)) {
        (Some(y), Some(m), Some(d)) => NaiveDate::from_ymd_opt(y as i32, m, d).is_some(),
        _ => false,
    }
}

fn gb32100_value(c: u8) -> Option<u32> {
    GB32100_ALPHABET
        .iter()
        .position(|&a| a == c)
        .map(|p| p as u32)
}

/// The check character for the first 17 characters of a 统一社会信用代码, or `None` if `first17`
/// is not 17 characters of its alphabet.
pub fn gb32100_check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, w) in b.iter().zip(GB32100_WEIGHTS) {
        sum += gb32100_value(c)? * w;
    }
    let check = (31 - sum % 31) % 31;
    Some(GB32100_ALPHABET[check as usize] as char)
}

/// What is wrong with a 统一社会信用代码, as the message the platform sees; `None` if valid.
pub fn gb32100_problem(uscc: &str) -> Option<&'static str> {
    let b = uscc.as_bytes();
    if b.len() != 18 || !b.iter().all(|&c| gb32100_value(c).is_some()) {
        return Some("not a valid 统一社会信用代码");
    }
    if gb32100_check_char(&uscc[..17]).is_none_or(|c| !uscc.ends_with(c)) {
        return Some("check character mismatch");
    }
    None
}

/// An 18-character 统一社会信用代码 whose last character is the check character of the first 17.
pub fn gb32100_valid(uscc: &str) -> bool {
    gb32100_problem(uscc).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD_IDS: [&str; 6] = [
        "410225199506120022",
        "410225199303050036",
        "410225198808080017",
        "410225197001010048",
        "410225198504200059",
        "410225198707150063",
    ];

    #[test]
    fn known_ids_pass() {
        for id in GOOD_IDS {
            assert!(gb11643_valid(id), "{id}");
            assert_eq!(gb11643_check_char(&id[..17]), id.chars().last());
        }
        // The standard's own example, with X as check character.
        assert!(gb11643_valid("11010519491231002X"));
    }

    #[test]
    fn bad_ids_fail_with_the_right_message() {
        assert_eq!(
            gb11643_problem("410225199506120023"),
            Some("check digit mismatch")
        );
        assert_eq!(
            gb11643_problem("41022519950612002"),
            Some("not a valid 居民身份证 number")
        );
        assert_eq!(
            gb11643_problem("4102251995061200221"),
            Some("not a valid 居民身份证 number")
        );
        assert_eq!(
            gb11643_problem("11010519491231002x"),
            Some("not a valid 居民身份证 number")
        );
        assert_eq!(
            gb11643_problem("41022519950612002A"),
            Some("not a valid 居民身份证 number")
        );
        assert_eq!(
            gb11643_problem("４10225199506120022"),
            Some("not a valid 居民身份证 number")
        );
        // 1995-02-30 is no date, even with the right check digit.
        let first = "41022519950230002";
        let id = format!("{first}{}", gb11643_check_char(first).unwrap());
        assert!(gb11643_checksum_ok(&id));
        assert_eq!(gb11643_problem(&id), Some("not a valid 居民身份证 number"));
        assert_eq!(gb11643_check_char("4102251995061200"), None);
        assert_eq!(gb11643_check_char("4102251995061200A"), None);
    }

    #[test]
    fn known_uscc_passes() {
        assert!(gb32100_valid("91350100M000100Y43"));
        assert_eq!(gb32100_check_char("91350100M000100Y4"), Some('3'));
        assert_eq!(
            gb32100_problem("91350100M000100Y44"),
            Some("check character mismatch")
        );
        assert_eq!(
            gb32100_problem("91350100M000100Y4"),
            Some("not a valid 统一社会信用代码")
        );
        assert_eq!(
            gb32100_problem("91350100M000100I43"),
            Some("not a valid 统一社会信用代码")
        );
        assert_eq!(gb32100_check_char("91350100M000100O4"), None);
    }

    fn uscc_char() -> impl Strategy<Value = char> {
        (0..31usize).prop_map(|i| GB32100_ALPHABET[i] as char)
    }

    proptest! {
        #[test]
        fn gb11643_check_char_makes_a_passing_checksum(first in "[0-9]{17}", other in "[0-9X]") {
            let c = gb11643_check_char(&first).unwrap();
            let id = format!("{first}{c}");
            prop_assert!(gb11643_checksum_ok(&id));
            let o = other.chars().next().unwrap();
            if o != c {
                let bad = format!("{first}{o}");
                prop_assert!(!gb11643_checksum_ok(&bad));
                prop_assert!(!gb11643_valid(&bad));
            }
        }

        #[test]
        fn gb11643_valid_on_real_birth_dates(
            area in "[1-6][0-9]{5}",
            date in (1900i32..2100, 1u32..=12, 1u32..=31)
                .prop_filter("real date", |(y, m, d)| NaiveDate::from_ymd_opt(*y, *m, *d).is_some()),
            seq in "[0-9]{3}",
        ) {
            let first = format!("{area}{:04}{:02}{:02}{seq}", date.0, date.1, date.2);
            let id = format!("{first}{}", gb11643_check_char(&first).unwrap());
            prop_assert!(gb11643_valid(&id));
        }

        #[test]
        fn gb32100_check_char_makes_a_valid_code(
            first in proptest::collection::vec(uscc_char(), 17),
            other in uscc_char(),
        ) {
            let first: String = first.into_iter().collect();
            let c = gb32100_check_char(&first).unwrap();
            let code = format!("{first}{c}");
            prop_assert!(gb32100_valid(&code));
            if other != c {
                let bad = format!("{first}{other}");
                prop_assert!(!gb32100_valid(&bad));
            }
        }

        #[test]
        fn no_panic_on_any_text(s in "\\PC{0,24}") {
            let _ = gb11643_valid(&s);
            let _ = gb32100_valid(&s);
            let _ = gb11643_check_char(&s);
            let _ = gb32100_check_char(&s);
        }
    }
}
