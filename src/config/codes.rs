//! Code tables (`codes/*.toml`): national standards (GB/T 2261.1, GB 3304, GA/T 2000.156) and each
//! department's own codes, as `code → value` maps with an optional default.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeTableFile {
    pub name: String,
    /// When set, the table maps every code of that table (its key domain); `check` verifies that
    /// each of those codes is here, unless a default is given.
    pub keys: Option<String>,
    /// Value for a code that is not listed.
    pub default: Option<String>,
    pub codes: IndexMap<String, String>,
}

/// A loaded code table.
#[derive(Debug, Clone)]
pub struct CodeTable {
    pub id: String,
    pub name: String,
    pub keys: Option<String>,
    pub default: Option<String>,
    pub codes: IndexMap<String, String>,
}

impl CodeTable {
    pub fn lookup(&self, code: &str) -> Option<&str> {
        self.codes
            .get(code)
            .or(self.default.as_ref())
            .map(String::as_str)
    }
}
