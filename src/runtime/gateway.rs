//! What every task of the daemon shares: the compiled mappings, the store, the clocks, the
//! transports, per-department limits and credentials, and the wake-up signals.

use std::collections::HashMap;
use std::sync::Arc;

use minijinja::value::Value;
use tokio::sync::Notify;

use super::clock::Clock;
use super::limits::Limiter;
use super::metrics::Metrics;
use crate::calendar::Calendar;
use crate::mapping::Mapping;
use crate::mapping::department::Department;
use crate::store::Store;
use crate::transport::http::Http;
use crate::transport::oauth::Tokens;

/// Looks up an environment variable (the process environment, or a test's own).
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct Gateway {
    pub mapping: Arc<Mapping>,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub calendar: Calendar,
    pub http: Http,
    pub tokens: Tokens,
    /// Credentials per department, as expression values.
    pub credentials: HashMap<String, Value>,
    /// Base URLs and folders per department (environment overrides applied).
    pub endpoints: HashMap<String, String>,
    pub limits: HashMap<String, Arc<Limiter>>,
    /// One batch poll at a time per department (it asks about every due item at once).
    pub batch_polls: HashMap<String, tokio::sync::Mutex<()>>,
    /// Wakes the scheduler when timers were added.
    pub timers_added: Notify,
    /// Wakes the relay when events were written.
    pub events_added: Notify,
    /// This instance's name (timer leases).
    pub instance: String,
    pub metrics: Metrics,
}

impl Gateway {
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
}
