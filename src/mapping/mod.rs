//! The mapping folder compiled for use, and the cross-file checks of `onething check`.
//!
//! [`Mapping::load`] reads every file (see `config`), compiles every expression and template, and
//! checks the references between files: catalog ↔ departments ↔ code tables ↔ the results that
//! later items use ↔ credentials. Every problem is reported as `FILE:LINE: message`.

pub mod answer;
pub mod callback;
pub mod context;
pub mod department;
pub mod expr;
pub mod operation;
pub mod report;
pub mod template;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use indexmap::IndexMap;
use minijinja::value::Value;
use regex::Regex;

use crate::config::catalog::{Catalog, FieldType};
use crate::config::codes::CodeTable;
use crate::config::department::Transition;
use crate::config::source::{Problem, Problems, SourceFile};
use crate::config::{self, calendar::CalendarFile};
use department::Department;
use expr::Expr;
use operation::OpKind;

/// A compiled catalog rule (`[[onething.X.rules]]`).
#[derive(Debug)]
pub struct CatalogRule {
    pub when: Option<Expr>,
    pub check: Expr,
    pub path: String,
    pub message: String,
}

/// The compiled expressions of a one-thing.
#[derive(Debug, Default)]
pub struct OneThingChecks {
    pub subject: Option<Expr>,
    pub rules: Vec<CatalogRule>,
    /// Material kind → condition under which it is required.
    pub material_required_when: IndexMap<String, Expr>,
}

/// The whole configuration, compiled.
#[derive(Debug)]
pub struct Mapping {
    pub catalog: Catalog,
    pub checks: IndexMap<String, OneThingChecks>,
    pub departments: IndexMap<String, Department>,
    pub codes: IndexMap<String, CodeTable>,
    /// The code tables as one value for expressions (`__codes`).
    pub codes_value: Value,
    pub calendars: Vec<CalendarFile>,
    /// Warnings that do not stop the gateway (e.g. a missing calendar year).
    pub warnings: Vec<Problem>,
}

static ENV_REF: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\benv\.([A-Za-z0-9_]+)").unwrap());
static CODE_REF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"\bcode\(\s*['"]([^'"]+)['"]\s*\)"#).unwrap());
static RESULT_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\bresults\s*(?:\[\s*['"]([a-z0-9-]+)['"]\s*\]|\.([a-z0-9_]+))\s*(?:\.\s*([a-z0-9_]+)|\[\s*['"]([a-z0-9_]+)['"]\s*\])"#).unwrap()
});

fn at_problem(at: &str, message: String) -> Problem {
    let (file, line) = at.rsplit_once(':').unwrap_or((at, "0"));
    Problem {
        file: file.to_string(),
        line: line.parse().unwrap_or(0),
        message,
    }
}

impl Mapping {
    /// Loads and compiles the mapping folder, or every problem found.
    pub fn load(dir: &Path) -> Result<Mapping, Problems> {
        let raw = config::load(dir)?;
        let mut problems: Vec<Problem> = Vec::new();
        let (cat_file, catalog) = raw.catalog;

        let mut codes = IndexMap::new();
        for (f, t) in raw.codes {
            codes.insert(t.id.clone(), (f, t));
        }
        check_code_tables(&codes, &mut problems);
        let codes_value = Value::from_pairs(codes.iter().map(|(id, (_, t))| {
            let mut m: IndexMap<String, String> = t.codes.clone();
            if let Some(d) = &t.default {
                m.insert("*".into(), d.clone());
            }
            (id.clone(), Value::from_pairs(m))
        }));

        let mut departments = IndexMap::new();
        for (f, d) in &raw.departments {
            let dept = Department::compile(f, d, &codes_value, &mut problems);
            if departments.contains_key(&dept.id) {
                problems.push(f.problem(
                    &d.id.span(),
                    format!("department `{}` defined twice", dept.id),
                ));
            }
            departments.insert(dept.id.clone(), dept);
        }

        let checks = check_catalog(&cat_file, &catalog, &departments, &codes, &mut problems);
        for d in departments.values() {
            check_department(d, &catalog, &codes, &mut problems);
        }

        let mut warnings = Vec::new();
        let mut calendars = Vec::new();
        for (f, c) in raw.calendars {
            if f.path.file_stem().and_then(|s| s.to_str()) != Some(c.year.to_string().as_str()) {
                problems.push(f.problem(
                    &(0..0),
                    format!("calendar for {} must be named {}.toml", c.year, c.year),
                ));
            }
            for h in &c.holidays {
                if h.first > h.last {
                    problems
                        .push(f.problem(&(0..0), format!("{}: first day after last day", h.name)));
                }
            }
            calendars.push(c);
        }
        let this_year: i32 =
            chrono::Datelike::year(&chrono::Utc::now().with_timezone(&crate::model::time::cst()));
        for y in [this_year, this_year + 1] {
            if !calendars.iter().any(|c| c.year == y) {
                warnings.push(Problem {
                    file: dir
                        .join("calendar")
                        .join(format!("{y}.toml"))
                        .display()
                        .to_string(),
                    line: 0,
                    message: format!(
                        "warning: no working-day calendar for {y}: weekends only will be counted"
                    ),
                });
            }
        }

        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        Ok(Mapping {
            catalog,
            checks,
            departments,
            codes: codes.into_iter().map(|(k, (_, t))| (k, t)).collect(),
            codes_value,
            calendars,
            warnings,
        })
    }

    /// The department that handles an item.
    pub fn department_of(&self, item: &str) -> Option<&Department> {
        let (_, _, it) = self.catalog.item(item)?;
        self.departments.get(it.department.get_ref())
    }
}

type Codes = IndexMap<String, (Arc<SourceFile>, CodeTable)>;

fn check_code_tables(codes: &Codes, problems: &mut Vec<Problem>) {
    for (id, (f, t)) in codes {
        let Some(domain) = &t.keys else { continue };
        match codes.get(domain) {
            None => problems.push(f.problem(
                &(0..0),
                format!("code table `{id}`: `keys` names unknown table `{domain}`"),
            )),
            Some((_, d)) if t.default.is_none() => {
                let missing: Vec<&str> = d
                    .codes
                    .keys()
                    .filter(|k| !t.codes.contains_key(*k))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    let line = 1 + f
                        .text
                        .lines()
                        .position(|l| l.trim_start().starts_with("[codes]"))
                        .unwrap_or(0);
                    problems.push(Problem {
                        file: f.path.display().to_string(),
                        line,
                        message: format!("code table `{id}` lacks codes of `{domain}`: {} (add them or a `default`)", missing.join(", ")),
                    });
                }
            }
            _ => {}
        }
    }
}

fn check_catalog(
    f: &SourceFile,
    catalog: &Catalog,
    departments: &IndexMap<String, Department>,
    codes: &Codes,
    problems: &mut Vec<Problem>,
) -> IndexMap<String, OneThingChecks> {
    let mut all = IndexMap::new();
    let mut seen_items: HashSet<&str> = HashSet::new();
    for (code, ot) in &catalog.onething {
        let otr = ot.get_ref();
        if !departments.contains_key(otr.lead.get_ref()) {
            problems.push(f.problem(
                &otr.lead.span(),
                format!(
                    "lead department `{}` has no mapping in departments/",
                    otr.lead.get_ref()
                ),
            ));
        }
        for (icode, item) in &otr.items {
            let it = item.get_ref();
            if !seen_items.insert(icode) {
                problems.push(f.problem(
                    &item.span(),
                    format!("item `{icode}` appears in two one-things"),
                ));
            }
            match departments.get(it.department.get_ref()) {
                None => problems.push(f.problem(
                    &it.department.span(),
                    format!(
                        "item `{icode}`: department `{}` has no mapping in departments/",
                        it.department.get_ref()
                    ),
                )),
                Some(d) if !d.items.contains_key(icode) => problems.push(f.problem(
                    &it.department.span(),
                    format!(
                        "item `{icode}`: {} has no `[items.{icode}]` operations",
                        d.file
                    ),
                )),
                _ => {}
            }
            for p in &it.prerequisites {
                if !otr.items.contains_key(p.get_ref()) {
                    problems.push(f.problem(
                        &p.span(),
                        format!(
                            "item `{icode}`: prerequisite `{}` is not an item of `{code}`",
                            p.get_ref()
                        ),
                    ));
                }
            }
            if it.prereview && it.prerequisites.is_empty() {
                problems.push(f.problem(
                    &item.span(),
                    format!("item `{icode}`: pre-review needs a prerequisite"),
                ));
            }
        }
        // Cycles among prerequisites.
        for icode in otr.items.keys() {
            let mut stack = vec![icode.as_str()];
            let mut seen = HashSet::new();
            while let Some(x) = stack.pop() {
                for p in otr
                    .items
                    .get(x)
                    .map(|i| i.get_ref().prerequisites.iter())
                    .into_iter()
                    .flatten()
                {
                    if p.get_ref() == icode {
                        problems.push(f.problem(
                            &p.span(),
                            format!("item `{icode}` depends on itself through its prerequisites"),
                        ));
                    } else if seen.insert(p.get_ref().as_str()) {
                        stack.push(p.get_ref());
                    }
                }
            }
        }
        for (path, spec) in &otr.fields {
            let s = spec.get_ref();
            if matches!(s.ty, FieldType::Code) || s.table.is_some() {
                match &s.table {
                    None => problems.push(f.problem(
                        &spec.span(),
                        format!("field `{path}`: type `code` needs a `table`"),
                    )),
                    Some(t) if !codes.contains_key(t) => problems.push(f.problem(
                        &spec.span(),
                        format!("field `{path}`: unknown code table `{t}`"),
                    )),
                    Some(t) => {
                        for v in s.values.iter().flatten() {
                            if !codes[t].1.codes.contains_key(v) {
                                problems.push(f.problem(
                                    &spec.span(),
                                    format!("field `{path}`: `{v}` is not in code table `{t}`"),
                                ));
                            }
                        }
                    }
                }
            }
            if matches!(s.ty, FieldType::Array) && s.of.is_none() {
                problems.push(f.problem(
                    &spec.span(),
                    format!("field `{path}`: type `array` needs `of`"),
                ));
            }
        }
        let mut checks = OneThingChecks {
            subject: Expr::compile_spanned(f, &otr.subject)
                .map_err(|p| problems.push(p))
                .ok(),
            ..Default::default()
        };
        for r in &otr.rules {
            let rr = r.get_ref();
            let when = rr.when.as_ref().and_then(|w| {
                Expr::compile_spanned(f, w)
                    .map_err(|p| problems.push(p))
                    .ok()
            });
            if let Ok(check) = Expr::compile_spanned(f, &rr.check).map_err(|p| problems.push(p)) {
                checks.rules.push(CatalogRule {
                    when,
                    check,
                    path: rr.path.clone(),
                    message: rr.message.clone(),
                });
            }
        }
        for (kind, m) in &otr.materials {
            if let Some(w) = &m.get_ref().required_when
                && let Ok(e) = Expr::compile_spanned(f, w).map_err(|p| problems.push(p))
            {
                checks.material_required_when.insert(kind.clone(), e);
            }
        }
        all.insert(code.clone(), checks);
    }
    all
}

fn check_department(d: &Department, catalog: &Catalog, codes: &Codes, problems: &mut Vec<Problem>) {
    let declared: HashSet<&str> = d.credentials.iter().map(String::as_str).collect();
    for e in d.exprs() {
        for cap in ENV_REF.captures_iter(&e.source) {
            if !declared.contains(&cap[1]) {
                problems.push(at_problem(
                    &e.at,
                    format!("`env.{}` is not declared in `credentials`", &cap[1]),
                ));
            }
        }
        for cap in CODE_REF.captures_iter(&e.source) {
            if !codes.contains_key(&cap[1]) {
                problems.push(at_problem(
                    &e.at,
                    format!("unknown code table `{}`", &cap[1]),
                ));
            }
        }
    }
    let is_file = d.folder.is_some();
    for (icode, ops) in &d.items {
        let Some((_, ot, item)) = catalog.item(icode) else {
            let at = ops
                .all()
                .next()
                .map(|o| o.at.clone())
                .unwrap_or_else(|| format!("{}:0", d.file));
            problems.push(at_problem(
                &at,
                format!("item `{icode}` is not in the catalog"),
            ));
            continue;
        };
        let at0 = ops
            .all()
            .next()
            .map(|o| o.at.clone())
            .unwrap_or_else(|| format!("{}:0", d.file));
        if item.department.get_ref() != &d.id {
            problems.push(at_problem(
                &at0,
                format!(
                    "item `{icode}` belongs to department `{}` in the catalog",
                    item.department.get_ref()
                ),
            ));
        }
        let required: &[OpKind] = match (item.prereview, is_file) {
            (true, _) => &[
                OpKind::Submit,
                OpKind::Prereview,
                OpKind::Complete,
                OpKind::Query,
                OpKind::Withdraw,
            ],
            (false, true) => &[OpKind::Submit, OpKind::Withdraw],
            (false, false) => &[OpKind::Submit, OpKind::Query, OpKind::Withdraw],
        };
        for k in required {
            if ops.get(*k).is_none() {
                problems.push(at_problem(
                    &at0,
                    format!("item `{icode}` has no `{}` operation", k.as_str()),
                ));
            }
        }
        // Results used by this item's operations must be results of its prerequisites.
        let mut prereqs: BTreeSet<&str> = BTreeSet::new();
        let mut stack: Vec<&str> = item
            .prerequisites
            .iter()
            .map(|p| p.get_ref().as_str())
            .collect();
        while let Some(p) = stack.pop() {
            if prereqs.insert(p)
                && let Some(pi) = ot.items.get(p)
            {
                stack.extend(
                    pi.get_ref()
                        .prerequisites
                        .iter()
                        .map(|x| x.get_ref().as_str()),
                );
            }
        }
        for op in ops.all() {
            for e in op.request_exprs() {
                for cap in RESULT_REF.captures_iter(&e.source) {
                    let used_item = cap.get(1).or(cap.get(2)).map(|m| m.as_str()).unwrap_or("");
                    let key = cap.get(3).or(cap.get(4)).map(|m| m.as_str()).unwrap_or("");
                    if !prereqs.contains(used_item) {
                        problems.push(at_problem(&e.at, format!("item `{icode}` uses results of `{used_item}`, which is not one of its prerequisites")));
                    } else if let Some(pi) = ot.items.get(used_item)
                        && !pi.get_ref().results.contains_key(key)
                    {
                        problems.push(at_problem(
                            &e.at,
                            format!(
                                "`{used_item}` has no result `{key}` in the catalog (it has: {})",
                                pi.get_ref()
                                    .results
                                    .keys()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        // Approved reports must give exactly the catalog's results for this item.
        if let Some(r) = &d.report {
            let approved: Vec<_> = r
                .states
                .iter()
                .filter(|s| {
                    s.to == Transition::Approved && s.item.as_deref().is_none_or(|i| i == icode)
                })
                .collect();
            if approved.is_empty() {
                problems.push(at_problem(
                    &at0,
                    format!("no `[[report.states]]` entry approves item `{icode}`"),
                ));
            }
            let want: BTreeSet<&str> = item.results.keys().map(String::as_str).collect();
            for s in approved {
                let got: BTreeSet<&str> = s.results.keys().map(String::as_str).collect();
                if got != want {
                    problems.push(at_problem(&s.at, format!("approval of `{icode}` gives results {got:?}; the catalog lists {want:?}")));
                }
            }
        }
    }
    if let Some(r) = &d.report {
        for s in &r.states {
            if let Some(i) = &s.item
                && !d.items.contains_key(i)
            {
                problems.push(at_problem(&s.at, format!("state for unknown item `{i}`")));
            }
        }
    }
    if d.items.len() > 1
        && let Some(r) = &d.report
        && !r.has_item()
    {
        problems.push(Problem {
            file: d.file.clone(),
            line: 0,
            message: "a department with several items needs `report.item` to tell them apart"
                .into(),
        });
    }
}
