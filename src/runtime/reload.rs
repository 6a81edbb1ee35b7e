//! Reading the configuration (mapping folder + environment) into a [`Config`], at start and on
//! SIGHUP. A reload is all or nothing: a mapping that `onething check` would refuse, a credential
//! missing from the environment, or a department or operation that open items still need, keeps
//! the running configuration in force and says why, in `check`'s words.

use std::collections::HashMap;
use std::sync::Arc;

use super::RunConfig;
use super::gateway::{Config, Gateway};
use super::limits::Limiter;
use crate::calendar::Calendar;
use crate::mapping::Mapping;
use crate::mapping::department::Department;
use crate::mapping::expr::to_value;

/// Reads the mapping folder and the environment. `previous`: the configuration in force, whose
/// limiters are kept for departments whose limits did not change (requests in flight keep
/// counting against them).
pub fn load_config(cfg: &RunConfig, previous: Option<&Config>) -> Result<Config, String> {
    let mapping = Mapping::load(&cfg.config_dir).map_err(|p| {
        let lines: Vec<String> = p.sorted().iter().map(ToString::to_string).collect();
        format!("the mappings are invalid:\n{}", lines.join("\n"))
    })?;
    let mut credentials = HashMap::new();
    let mut endpoints = HashMap::new();
    let mut limits = HashMap::new();
    let mut missing = Vec::new();
    let env = cfg.env.clone();
    let lookup = move |k: &str| env(k);
    for d in mapping.departments.values() {
        match d.credentials(&lookup) {
            Ok(c) => {
                credentials.insert(d.id.clone(), to_value(&c));
            }
            Err(m) => missing.extend(m),
        }
        let endpoint = d
            .resolved_base_url(&lookup)
            .or_else(|| d.resolved_folder(&lookup));
        if let Some(e) = endpoint {
            endpoints.insert(d.id.clone(), e);
        }
        let l = &d.limits;
        let unchanged = previous.and_then(|p| {
            let old = p.department(&d.id)?;
            let same = (
                old.limits.concurrency,
                old.limits.per_second,
                old.limits.poll_per_minute,
            ) == (l.concurrency, l.per_second, l.poll_per_minute);
            same.then(|| p.limiter(&d.id)).flatten()
        });
        limits.insert(
            d.id.clone(),
            unchanged.unwrap_or_else(|| {
                Arc::new(Limiter::new(l.concurrency, l.per_second, l.poll_per_minute))
            }),
        );
    }
    if !missing.is_empty() {
        return Err(Department::missing_message(&missing));
    }
    let batch_polls = mapping
        .departments
        .keys()
        .map(|d| {
            let kept = previous.and_then(|p| p.batch_polls.get(d).cloned());
            (d.clone(), kept.unwrap_or_default())
        })
        .collect();
    Ok(Config {
        calendar: Calendar::new(&mapping.calendars),
        mapping: Arc::new(mapping),
        credentials,
        endpoints,
        limits,
        batch_polls,
        generation: previous.map_or(1, |p| p.generation + 1),
    })
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub generation: u64,
    /// Departments whose credentials changed (their OAuth2 tokens were dropped).
    pub credentials_changed: Vec<String>,
}

/// Re-reads the configuration and puts it in force, or leaves the running one and says why.
pub async fn reload(gw: &Gateway, cfg: &RunConfig) -> Result<Reloaded, String> {
    let current = gw.config();
    let new = load_config(cfg, Some(&current))?;
    // Open items must still find their department and its operations.
    let open = gw
        .store
        .open_item_kinds()
        .await
        .map_err(|e| format!("cannot check the open items: {e}"))?;
    let mut needed = Vec::new();
    for (department, item) in open {
        let known = new
            .department(&department)
            .is_some_and(|d| d.items.contains_key(&item));
        if !known {
            needed.push(format!("{department}/{item}"));
        }
    }
    if !needed.is_empty() {
        return Err(format!(
            "open items still need what the new mappings remove: {}",
            needed.join(", ")
        ));
    }
    let credentials_changed: Vec<String> = new
        .credentials
        .iter()
        .filter(|(d, v)| current.credentials.get(*d) != Some(*v))
        .map(|(d, _)| d.clone())
        .collect();
    for d in &credentials_changed {
        gw.tokens.invalidate(d);
    }
    new.share_limits(&gw.store, &gw.instance).await?;
    let generation = new.generation;
    gw.swap_config(new);
    Ok(Reloaded {
        generation,
        credentials_changed,
    })
}
