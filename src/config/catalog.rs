//! The catalog file (`catalog.toml`): one-things, their items, departments, prerequisites, time
//! limits, form fields, materials and the results each item hands on.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::tree::SpannedExpr;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The county's GB/T 2260 division code.
    pub division: String,
    /// One-things by code, in the order written.
    pub onething: IndexMap<String, Spanned<OneThing>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneThing {
    pub name: String,
    /// Lead department id.
    pub lead: Spanned<String>,
    /// `person` or `organization`.
    pub applicant: Spanned<ApplicantKind>,
    /// Expression giving the name of whom the case is about (logs, simulators).
    pub subject: SpannedExpr,
    pub items: IndexMap<String, Spanned<Item>>,
    #[serde(default)]
    pub fields: IndexMap<String, Spanned<FieldSpec>>,
    #[serde(default)]
    pub materials: IndexMap<String, Spanned<MaterialSpec>>,
    /// Cross-field rules that the field table cannot say.
    #[serde(default)]
    pub rules: Vec<Spanned<Rule>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplicantKind {
    Person,
    Organization,
}

impl ApplicantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicantKind::Person => "person",
            ApplicantKind::Organization => "organization",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub name: String,
    pub department: Spanned<String>,
    #[serde(default)]
    pub prerequisites: Vec<Spanned<String>>,
    #[serde(default)]
    pub prereview: bool,
    /// Promised completion, in working days.
    pub complete_days: u32,
    /// Result keys with their type, in order.
    #[serde(default)]
    pub results: IndexMap<String, ResultType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultType {
    Text,
    /// RFC 3339 date-time.
    Datetime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Integer,
    Number,
    Date,
    Time,
    Boolean,
    Code,
    Person,
    Array,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default)]
    pub required: bool,
    /// For `code`: the code table the value must be in.
    pub table: Option<String>,
    /// For `text` and `code`: the only values allowed.
    pub values: Option<Vec<String>>,
    /// For `array`: the type of each element.
    pub of: Option<FieldType>,
    /// For `array`: the fewest elements.
    pub min_items: Option<usize>,
    /// For `text`: exact length in characters.
    pub length: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialSpec {
    pub name: String,
    #[serde(default)]
    pub required: bool,
    /// Required only when this expression is true.
    pub required_when: Option<SpannedExpr>,
}

/// A check over the whole submission: where `when` holds, `check` must hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub when: Option<SpannedExpr>,
    pub check: SpannedExpr,
    /// JSON pointer reported when the check fails.
    pub path: String,
    pub message: String,
}

impl Catalog {
    /// The one-thing and item that an item code belongs to, if any.
    pub fn item(&self, code: &str) -> Option<(&str, &OneThing, &Item)> {
        self.onething.iter().find_map(|(ot_code, ot)| {
            ot.get_ref()
                .items
                .get(code)
                .map(|it| (ot_code.as_str(), ot.get_ref(), it.get_ref()))
        })
    }
}
