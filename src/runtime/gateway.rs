//! What every task of the daemon shares: the configuration in force (mappings, calendar,
//! credentials, endpoints, per-department limits — swapped whole on reload), the store, the
//! clocks, the transports and the wake-up signals.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use minijinja::value::Value;
use tokio::sync::Notify;

use super::clock::Clock;
use super::limits::{Limiter, Permit};
use super::metrics::Metrics;
use crate::calendar::Calendar;
use crate::mapping::Mapping;
use crate::mapping::department::Department;
use crate::store::Store;
use crate::transport::http::Http;
use crate::transport::oauth::Tokens;

/// Looks up an environment variable (the process environment, or a test's own).
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The configuration in force: everything read from the mapping folder and the environment. An
/// operation takes it once at its start (`Gateway::config`) and finishes under it, even if a
/// reload swaps in another meanwhile.
pub struct Config {
    pub mapping: Arc<Mapping>,
    pub calendar: Calendar,
    /// Credentials per department, as expression values.
    pub credentials: HashMap<String, Value>,
    /// Base URLs and folders per department (environment overrides applied).
    pub endpoints: HashMap<String, String>,
    pub limits: HashMap<String, Arc<Limiter>>,
    /// One batch poll at a time per department (it asks about every due item at once).
    pub batch_polls: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// 1 at start, +1 per successful reload.
    pub generation: u64,
}

impl Config {
    pub fn department(&self, id: &str) -> Option<&Department> {
        self.mapping.departments.get(id)
    }

    pub fn credentials_of(&self, id: &str) -> Value {
        self.credentials
            .get(id)
            .cloned()
            .unwrap_or(Value::UNDEFINED)
    }

    pub fn endpoint(&self, id: &str) -> Option<&str> {
        self.endpoints.get(id).map(String::as_str)
    }

    pub fn limiter(&self, id: &str) -> Option<Arc<Limiter>> {
        self.limits.get(id).cloned()
    }

    /// The right to send department `id` one request (`poll`: one poll, within its poll budget
    /// too), waiting for its limits; held until dropped. `None` for a department without limits.
    pub async fn permit(&self, id: &str, poll: bool) -> Option<Permit> {
        let l = self.limits.get(id)?;
        Some(if poll {
            l.poll().await
        } else {
            l.request().await
        })
    }

    /// On a PostgreSQL store (where several instances may run), keeps every department's limits
    /// through the store, so that the instances together stay within them. A permit is held at
    /// most the department's request timeout and ten seconds more.
    pub async fn share_limits(&self, store: &Arc<Store>, instance: &str) -> Result<(), String> {
        if store.backend() != crate::store::Backend::Postgres {
            return Ok(());
        }
        for d in self.mapping.departments.values() {
            if let Some(l) = self.limiter(&d.id) {
                let hold = d.limits.timeout + Duration::from_secs(10);
                l.share(store.clone(), &d.id, instance, hold).await?;
            }
        }
        Ok(())
    }
}

pub struct Gateway {
    config: RwLock<Arc<Config>>,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub http: Http,
    pub tokens: Tokens,
    /// Wakes the scheduler when timers were added.
    pub timers_added: Notify,
    /// Wakes the relay when events were written.
    pub events_added: Notify,
    /// This instance's name (timer leases).
    pub instance: String,
    /// How long a claim lasts without renewal (the heartbeat renews it a few times per lease).
    pub lease: Duration,
    pub metrics: Metrics,
}

impl Gateway {
    pub fn new(
        config: Config,
        store: Arc<Store>,
        clock: Clock,
        instance: String,
        lease: Duration,
    ) -> Gateway {
        let http = Http::new();
        Gateway {
            config: RwLock::new(Arc::new(config)),
            store,
            clock,
            tokens: Tokens::new(http.clone()),
            http,
            timers_added: Default::default(),
            events_added: Default::default(),
            instance,
            lease,
            metrics: Default::default(),
        }
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts a new configuration in force; operations already running keep the one they took.
    pub fn swap_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }
}
