//! Working days (工作日): weekends and statutory holidays off, make-up working days (调休上班) on,
//! from the yearly files in `mappings/calendar/`; and the legal time limits counted in them.
//!
//! A limit of N working days ends at 23:59:59 (+08:00) of the N-th working day after the day on
//! which the clock started; that day itself is not counted. A year without a file counts weekends
//! only.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Weekday};

use crate::config::calendar::CalendarFile;
use crate::model::time::cst;

#[derive(Debug, Clone, Default)]
pub struct Calendar {
    off: HashSet<NaiveDate>,
    work: HashSet<NaiveDate>,
    years: BTreeSet<i32>,
    /// Years without a file already warned about (once per year).
    warned: std::sync::Arc<std::sync::Mutex<BTreeSet<i32>>>,
}

impl Calendar {
    pub fn new(files: &[CalendarFile]) -> Calendar {
        let mut c = Calendar::default();
        for f in files {
            c.years.insert(f.year);
            for h in &f.holidays {
                let mut d = h.first;
                while d <= h.last {
                    c.off.insert(d);
                    d = d.succ_opt().expect("date in range");
                }
                c.work.extend(h.work.iter().copied());
            }
        }
        c
    }

    /// Whether the calendar has a file for `year` (else only weekends are known).
    pub fn knows(&self, year: i32) -> bool {
        self.years.contains(&year)
    }

    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if !self.years.contains(&d.year()) {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if warned.insert(d.year()) {
                tracing::warn!(
                    year = d.year(),
                    "no working-day calendar for this year: counting weekends only (add mappings/calendar/{}.toml)",
                    d.year()
                );
            }
        }
        if self.work.contains(&d) {
            return true;
        }
        if self.off.contains(&d) {
            return false;
        }
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// The N-th working day after `day` (not counting `day`); N = 0 gives `day`.
    pub fn add_working_days(&self, day: NaiveDate, n: u32) -> NaiveDate {
        let mut d = day;
        let mut left = n;
        while left > 0 {
            d = d.succ_opt().expect("date in range");
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }

    /// When a limit of `days` working days that started at `start` ends: 23:59:59 +08:00.
    pub fn deadline(&self, start: DateTime<FixedOffset>, days: u32) -> DateTime<FixedOffset> {
        let day = start.with_timezone(&cst()).date_naive();
        let end = self.add_working_days(day, days);
        cst()
            .from_local_datetime(&end.and_hms_opt(23, 59, 59).expect("valid time"))
            .single()
            .expect("fixed offset is unambiguous")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::calendar::Holiday;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn cal2026() -> Calendar {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/mappings/calendar/2026.toml"
        ))
        .unwrap();
        let f: CalendarFile = toml::from_str(&text).unwrap();
        Calendar::new(&[f])
    }

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn catalog_examples() {
        let c = cal2026();
        assert_eq!(
            c.deadline(at("2026-05-08T15:00:00+08:00"), 1),
            at("2026-05-09T23:59:59+08:00")
        );
        assert_eq!(
            c.deadline(at("2026-09-30T10:00:00+08:00"), 1),
            at("2026-10-08T23:59:59+08:00")
        );
    }

    #[test]
    fn spring_festival_and_labour_day() {
        let c = cal2026();
        // Fri 13 Feb → Sat 14 Feb is a make-up working day.
        assert_eq!(c.add_working_days(d("2026-02-13"), 1), d("2026-02-14"));
        // Sat 14 Feb → the holiday runs to 23 Feb (Mon) → Tue 24 Feb.
        assert_eq!(c.add_working_days(d("2026-02-14"), 1), d("2026-02-24"));
        // Thu 30 Apr → 1–5 May off → Wed 6 May.
        assert_eq!(c.add_working_days(d("2026-04-30"), 1), d("2026-05-06"));
        assert!(!c.is_working_day(d("2026-10-07")));
        assert!(c.is_working_day(d("2026-09-20")), "Sunday make-up day");
        // Pushed after midnight in +08:00 counts from that day.
        assert_eq!(
            c.deadline(at("2026-03-16T16:30:00Z"), 1),
            at("2026-03-18T23:59:59+08:00")
        );
    }

    #[test]
    fn a_year_without_a_file_counts_weekends_only() {
        let c = cal2026();
        assert!(!c.knows(2027));
        assert!(
            c.is_working_day(d("2027-01-01")),
            "no 2027 file: New Year is a Friday like any other"
        );
        assert_eq!(c.add_working_days(d("2027-01-01"), 1), d("2027-01-04"));
    }

    proptest! {
        #[test]
        fn limits_end_on_a_working_day_at_the_last_second(days in 0u32..40, offset in 0i64..(366 * 24 * 3600)) {
            let c = cal2026();
            let start = at("2026-01-01T00:00:00+08:00") + chrono::Duration::seconds(offset);
            let end = c.deadline(start, days);
            prop_assert_eq!(end.time(), chrono::NaiveTime::from_hms_opt(23, 59, 59).unwrap());
            if days > 0 {
                prop_assert!(c.is_working_day(end.date_naive()));
                prop_assert!(end.date_naive() > start.date_naive());
            }
            prop_assert!(c.deadline(start, days + 1) > end, "N+1 days end after N days");
        }

        #[test]
        fn make_up_days_count(extra in 0usize..3) {
            let mut c = Calendar::new(&[CalendarFile { year: 2030, source: None, holidays: vec![Holiday {
                name: "test".into(), first: d("2030-01-07"), last: d("2030-01-07"),
                work: vec![d("2030-01-05"), d("2030-01-06")][..extra.min(2)].to_vec(),
            }]}]);
            c.years.insert(2030);
            // Fri 4 Jan 2030 + 1 working day: Sat 5 if it is a make-up day, else Tue 8 (Mon 7 off).
            let got = c.add_working_days(d("2030-01-04"), 1);
            prop_assert_eq!(got, if extra >= 1 { d("2030-01-05") } else { d("2030-01-08") });
        }
    }
}
