//! Working-day calendars (`calendar/<year>.toml`): statutory holidays and make-up working days.

use chrono::NaiveDate;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarFile {
    pub year: i32,
    /// Where the dates come from (the State Council's notice).
    pub source: Option<String>,
    #[serde(default)]
    pub holidays: Vec<Holiday>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    pub name: String,
    /// First and last day off, inclusive (quoted `YYYY-MM-DD`).
    pub first: NaiveDate,
    pub last: NaiveDate,
    /// Weekend days that are working days (调休上班).
    #[serde(default)]
    pub work: Vec<NaiveDate>,
}
