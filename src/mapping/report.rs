//! Reading status reports: a record from a callback, a query's answer or an answer file becomes a
//! [`StatusReport`]: which case and item, the department's status, and the item transition it
//! means (with its times, reason and results), per the mapping's state table.

use indexmap::IndexMap;
use minijinja::value::{Value, ValueKind};

use super::expr::{Expr, Scope};
use crate::config::department::{Report, Transition};
use crate::config::source::{Problem, SourceFile};

#[derive(Debug)]
pub struct StateRule {
    pub status: String,
    pub item: Option<String>,
    pub when: Option<Expr>,
    pub to: Transition,
    pub accepted_at: Option<Expr>,
    pub reason: Option<Expr>,
    pub stage: Option<Expr>,
    pub note: Option<Expr>,
    pub results: IndexMap<String, Expr>,
    pub at: String,
}

#[derive(Debug)]
pub struct ReportReader {
    case_id: Expr,
    item: Option<Expr>,
    status: Expr,
    reference: Option<Expr>,
    pub states: Vec<StateRule>,
    /// The code tables, for `code()` in report expressions.
    codes: Value,
}

/// The change a report asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Dispatched,
    Progress {
        stage: String,
        note: Option<String>,
    },
    Accepted {
        accepted_at: Option<String>,
    },
    Rejected {
        reason: String,
    },
    Approved {
        results: IndexMap<String, String>,
        accepted_at: Option<String>,
    },
    Denied {
        reason: String,
        accepted_at: Option<String>,
    },
    Withdrawn {
        reason: Option<String>,
    },
    Failed {
        error: String,
    },
    Ignore,
}

impl Change {
    /// Whether the report ends the item at the department.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Change::Rejected { .. }
                | Change::Approved { .. }
                | Change::Denied { .. }
                | Change::Withdrawn { .. }
                | Change::Failed { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub case_id: String,
    pub item: Option<String>,
    pub reference: Option<String>,
    /// The department's own status value.
    pub status: String,
    pub change: Change,
}

impl ReportReader {
    pub fn compile(
        file: &SourceFile,
        r: &Report,
        codes: &Value,
        problems: &mut Vec<Problem>,
    ) -> Option<ReportReader> {
        let mut c = |s: &toml::Spanned<String>| {
            Expr::compile_spanned(file, s)
                .map_err(|p| problems.push(p))
                .ok()
        };
        let case_id = c(&r.case_id);
        let item = r.item.as_ref().and_then(&mut c);
        let status = c(&r.status);
        let reference = r.reference.as_ref().and_then(&mut c);
        let mut states = Vec::new();
        for s in &r.states {
            let at = format!("{}:{}", file.path.display(), file.line_of(s.span().start));
            let s = s.get_ref();
            let results = s
                .results
                .iter()
                .flatten()
                .filter_map(|(k, e)| c(e).map(|e| (k.clone(), e)))
                .collect();
            states.push(StateRule {
                status: s.status.clone(),
                item: s.item.clone(),
                when: s.when.as_ref().and_then(&mut c),
                to: s.to,
                accepted_at: s.accepted_at.as_ref().and_then(&mut c),
                reason: s.reason.as_ref().and_then(&mut c),
                stage: s.stage.as_ref().and_then(&mut c),
                note: s.note.as_ref().and_then(&mut c),
                results,
                at,
            });
        }
        Some(ReportReader {
            case_id: case_id?,
            item,
            status: status?,
            reference,
            states,
            codes: codes.clone(),
        })
    }

    /// Whether records say which item they are about.
    pub fn has_item(&self) -> bool {
        self.item.is_some()
    }

    pub fn exprs(&self) -> Vec<&Expr> {
        let mut v = vec![&self.case_id, &self.status];
        v.extend(self.item.iter());
        v.extend(self.reference.iter());
        for s in &self.states {
            v.extend(s.when.iter());
            v.extend(s.accepted_at.iter());
            v.extend(s.reason.iter());
            v.extend(s.stage.iter());
            v.extend(s.note.iter());
            v.extend(s.results.values());
        }
        v
    }

    /// Reads one record. `asked_item` is the item a query asked about; `extra` adds names: a
    /// query's records also see `case_id` (the case asked about), answer files `file_name`.
    pub fn read(
        &self,
        record: &Value,
        asked_item: Option<&str>,
        extra: &[(&'static str, Value)],
    ) -> Result<StatusReport, String> {
        let mut scope = Scope::new(None)
            .with("r", record.clone())
            .with("__codes", self.codes.clone());
        if let Some(i) = asked_item {
            scope.set("item", Value::from(i));
        }
        for (k, v) in extra {
            scope.set(k, v.clone());
        }
        let ctx = scope.into_value();
        let need = |e: &Expr, what: &str| -> Result<String, String> {
            e.eval_opt_string(&ctx)?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("{}: report has no {what} (`{}`)", e.at, e.source))
        };
        let case_id = need(&self.case_id, "case id")?;
        let status = need(&self.status, "status")?;
        let item = match &self.item {
            Some(e) => Some(need(e, "item")?),
            None => asked_item.map(str::to_string),
        };
        let reference = match &self.reference {
            Some(e) => e.eval_opt_string(&ctx)?.filter(|s| !s.is_empty()),
            None => None,
        };
        let ctx = Scope::new(Some(ctx))
            .with(
                "item",
                item.clone().map(Value::from).unwrap_or(Value::UNDEFINED),
            )
            .into_value();
        for rule in &self.states {
            if rule.status != status {
                continue;
            }
            if let (Some(only), Some(it)) = (&rule.item, &item)
                && only != it
            {
                continue;
            }
            if let Some(w) = &rule.when
                && !w.eval(&ctx)?.is_true()
            {
                continue;
            }
            let change = rule.change(&ctx)?;
            return Ok(StatusReport {
                case_id,
                item,
                reference,
                status,
                change,
            });
        }
        Err(format!("unknown status `{status}` in report"))
    }
}

impl StateRule {
    fn change(&self, ctx: &Value) -> Result<Change, String> {
        let opt = |e: &Option<Expr>| -> Result<Option<String>, String> {
            match e {
                Some(e) => Ok(e.eval_opt_string(ctx)?.filter(|s| !s.is_empty())),
                None => Ok(None),
            }
        };
        let reason = || -> Result<String, String> {
            Ok(opt(&self.reason)?.unwrap_or_else(|| "(no reason given)".into()))
        };
        Ok(match self.to {
            Transition::Dispatched => Change::Dispatched,
            Transition::Progress => Change::Progress {
                stage: opt(&self.stage)?.unwrap_or_else(|| self.status.clone()),
                note: opt(&self.note)?,
            },
            Transition::Accepted => Change::Accepted {
                accepted_at: opt(&self.accepted_at)?,
            },
            Transition::Rejected => Change::Rejected { reason: reason()? },
            Transition::Denied => Change::Denied {
                reason: reason()?,
                accepted_at: opt(&self.accepted_at)?,
            },
            Transition::Withdrawn => Change::Withdrawn {
                reason: opt(&self.reason)?,
            },
            Transition::Failed => Change::Failed { error: reason()? },
            Transition::Ignore => Change::Ignore,
            Transition::Approved => {
                let mut results = IndexMap::new();
                for (k, e) in &self.results {
                    let v = e
                        .eval_opt_string(ctx)?
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| {
                            format!(
                                "{}: approved report without result `{k}` (`{}`)",
                                e.at, e.source
                            )
                        })?;
                    results.insert(k.clone(), v);
                }
                Change::Approved {
                    results,
                    accepted_at: opt(&self.accepted_at)?,
                }
            }
        })
    }
}

/// The records an expression finds: a list, or one record.
pub fn records_of(v: Value) -> Vec<Value> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Vec::new(),
        ValueKind::Seq | ValueKind::Iterable => {
            v.try_iter().map(|i| i.collect()).unwrap_or_default()
        }
        _ => vec![v],
    }
}
