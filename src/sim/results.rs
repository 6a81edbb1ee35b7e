//! Plausible results for approved applications: numbers in the documented shapes, with correct
//! check characters where a standard defines one.

use crate::validate::ids::{gb11643_check_char, gb32100_check_char};

/// `n` decimal digits from a sequence number (zero-padded, wrapping).
pub fn digits(seq: u64, n: u32) -> String {
    let m = 10u64.pow(n);
    format!("{:0width$}", seq % m, width = n as usize)
}

/// An 18-character citizen id (GB 11643) for a child born on `birth_date` (`YYYY-MM-DD`) in
/// `division`; the sequence digit is odd for a boy (`1`) and even for a girl (`2`).
pub fn citizen_id(division: &str, birth_date: &str, gender: &str, seq: u64) -> String {
    let date: String = birth_date.chars().filter(char::is_ascii_digit).collect();
    let order = (seq % 50) * 2 + if gender == "2" { 0 } else { 1 };
    let first17 = format!("{division:0>6.6}{date:0>8.8}{order:03}");
    let check = gb11643_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// An 18-character USCC (GB 32100) of a company registered in `division`.
pub fn uscc(division: &str, seq: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let mut body = String::new();
    let mut x = seq.wrapping_mul(2_654_435_761).wrapping_add(97);
    for _ in 0..9 {
        body.push(ALPHABET[(x % 31) as usize] as char);
        x /= 31;
    }
    let first17 = format!("91{division:0>6.6}{body}");
    let check = gb32100_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::ids::{gb11643_valid, gb32100_valid};

    #[test]
    fn generated_numbers_pass_their_standards() {
        for seq in 0..200 {
            let id = citizen_id(
                "410225",
                "2026-03-15",
                if seq % 2 == 0 { "1" } else { "2" },
                seq,
            );
            assert!(gb11643_valid(&id), "{id}");
            assert_eq!(&id[6..14], "20260315");
            let u = uscc("410225", seq);
            assert!(gb32100_valid(&u), "{u}");
        }
        assert_eq!(digits(42, 6), "000042");
    }
}
