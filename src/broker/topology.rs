//! The names of the broker topology (amqp.md "Topology"): defaults, environment overrides, test
//! suffixes, and the idempotent declaration of all of it on a channel.

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, ShortString},
};

/// The routing keys the intake queue is bound with.
pub const INTAKE_ROUTING_KEYS: [&str; 2] = ["submission", "withdrawal"];

/// The type of the intake queue (`x-queue-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueType {
    /// A classic queue (the default; one broker).
    #[default]
    Classic,
    /// A replicated quorum queue (clusters).
    Quorum,
}

impl QueueType {
    /// The value of the `x-queue-type` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }

    /// Parses `classic` or `quorum` (case-insensitive).
    pub fn parse(text: &str) -> Result<QueueType, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            other => Err(format!(
                "ONETHING_AMQP_QUEUE_TYPE: `{other}` is neither `classic` nor `quorum`"
            )),
        }
    }
}

/// Names of the topology; defaults per amqp.md; every name configurable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Direct exchange the platform publishes submissions and withdrawals to.
    pub intake_exchange: String,
    /// Durable queue the gateway consumes.
    pub intake_queue: String,
    /// Type of the intake queue.
    pub queue_type: QueueType,
    /// Fanout exchange for messages the gateway could not take.
    pub dead_exchange: String,
    /// Durable queue bound to the dead-letter exchange.
    pub dead_queue: String,
    /// Topic exchange every event is published to.
    pub events_exchange: String,
}

impl Default for Topology {
    fn default() -> Self {
        Topology::defaults()
    }
}

impl Topology {
    /// The names of amqp.md.
    pub fn defaults() -> Topology {
        Topology {
            intake_exchange: "onething.intake".into(),
            intake_queue: "onething.gateway.intake".into(),
            queue_type: QueueType::Classic,
            dead_exchange: "onething.dlx".into(),
            dead_queue: "onething.gateway.dead".into(),
            events_exchange: "onething.events".into(),
        }
    }

    /// Overrides from the environment: `ONETHING_AMQP_INTAKE_EXCHANGE`, `ONETHING_AMQP_INTAKE_QUEUE`,
    /// `ONETHING_AMQP_QUEUE_TYPE` (classic|quorum), `ONETHING_AMQP_DEAD_EXCHANGE`,
    /// `ONETHING_AMQP_DEAD_QUEUE`, `ONETHING_AMQP_EVENTS_EXCHANGE`, read through `env` so that
    /// tests can pass their own lookup. Unset variables keep the defaults; an empty, reserved
    /// (`amq.` prefix) or over-long name is an error naming the variable.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Topology, String> {
        let mut topology = Topology::defaults();
        let names: [(&str, &mut String); 5] = [
            (
                "ONETHING_AMQP_INTAKE_EXCHANGE",
                &mut topology.intake_exchange,
            ),
            ("ONETHING_AMQP_INTAKE_QUEUE", &mut topology.intake_queue),
            ("ONETHING_AMQP_DEAD_EXCHANGE", &mut topology.dead_exchange),
            ("ONETHING_AMQP_DEAD_QUEUE", &mut topology.dead_queue),
            (
                "ONETHING_AMQP_EVENTS_EXCHANGE",
                &mut topology.events_exchange,
            ),
        ];
        for (var, slot) in names {
            if let Some(value) = env(var) {
                check_name(var, &value)?;
                *slot = value;
            }
        }
        if let Some(value) = env("ONETHING_AMQP_QUEUE_TYPE") {
            topology.queue_type = QueueType::parse(&value)?;
        }
        Ok(topology)
    }

    /// The default names, each followed by `suffix` (tests: unique names per test).
    pub fn with_suffix(suffix: &str) -> Topology {
        let d = Topology::defaults();
        Topology {
            intake_exchange: format!("{}{suffix}", d.intake_exchange),
            intake_queue: format!("{}{suffix}", d.intake_queue),
            queue_type: d.queue_type,
            dead_exchange: format!("{}{suffix}", d.dead_exchange),
            dead_queue: format!("{}{suffix}", d.dead_queue),
            events_exchange: format!("{}{suffix}", d.events_exchange),
        }
    }

    /// Checks every name (non-empty, not reserved, at most 255 bytes).
    pub fn validate(&self) -> Result<(), String> {
        check_name("intake exchange", &self.intake_exchange)?;
        check_name("intake queue", &self.intake_queue)?;
        check_name("dead-letter exchange", &self.dead_exchange)?;
        check_name("dead-letter queue", &self.dead_queue)?;
        check_name("events exchange", &self.events_exchange)
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what}: the name is empty"));
    }
    if name.starts_with("amq.") {
        return Err(format!("{what}: `{name}` uses the reserved prefix `amq.`"));
    }
    if name.len() > 255 {
        return Err(format!("{what}: the name is longer than 255 bytes"));
    }
    Ok(())
}

/// Declares the whole topology on `channel` (idempotent: the same declarations succeed again).
/// The declarations are recorded by lapin on this channel and replayed when it recovers.
pub(crate) async fn declare(channel: &Channel, t: &Topology) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let none = FieldTable::default;
    channel
        .exchange_declare(
            short(&t.intake_exchange),
            ExchangeKind::Direct,
            durable,
            none(),
        )
        .await?;
    let mut intake_args = FieldTable::default();
    intake_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(t.queue_type.as_str().into()),
    );
    channel
        .queue_declare(short(&t.intake_queue), durable_queue, intake_args)
        .await?;
    for key in INTAKE_ROUTING_KEYS {
        channel
            .queue_bind(
                short(&t.intake_queue),
                short(&t.intake_exchange),
                key.into(),
                QueueBindOptions::default(),
                none(),
            )
            .await?;
    }
    channel
        .exchange_declare(
            short(&t.dead_exchange),
            ExchangeKind::Fanout,
            durable,
            none(),
        )
        .await?;
    channel
        .queue_declare(short(&t.dead_queue), durable_queue, none())
        .await?;
    channel
        .queue_bind(
            short(&t.dead_queue),
            short(&t.dead_exchange),
            "".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await?;
    channel
        .exchange_declare(
            short(&t.events_exchange),
            ExchangeKind::Topic,
            durable,
            none(),
        )
        .await?;
    Ok(())
}

/// A name already checked by [`Topology::validate`] (so it cannot exceed 255 bytes).
fn short(name: &str) -> ShortString {
    ShortString::try_new(name).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_env_overrides_and_checks() {
        let env = |name: &str| match name {
            "ONETHING_AMQP_INTAKE_QUEUE" => Some("county.intake".to_string()),
            "ONETHING_AMQP_QUEUE_TYPE" => Some("Quorum".to_string()),
            _ => None,
        };
        let t = Topology::from_env(&env).expect("valid");
        assert_eq!(t.intake_queue, "county.intake");
        assert_eq!(t.queue_type, QueueType::Quorum);
        assert_eq!(t.intake_exchange, "onething.intake");
        assert_eq!(t.events_exchange, "onething.events");
        assert_eq!(Topology::from_env(&|_| None), Ok(Topology::defaults()));
        let bad = |n: &str| (n == "ONETHING_AMQP_QUEUE_TYPE").then(|| "stream".into());
        assert!(Topology::from_env(&bad).is_err());
        let reserved = |n: &str| (n == "ONETHING_AMQP_DEAD_EXCHANGE").then(|| "amq.x".into());
        assert!(Topology::from_env(&reserved).is_err());
        let empty = |n: &str| (n == "ONETHING_AMQP_EVENTS_EXCHANGE").then(String::new);
        assert!(Topology::from_env(&empty).is_err());
    }

    #[test]
    fn suffix_applies_to_every_name() {
        let t = Topology::with_suffix(".x");
        assert_eq!(t.intake_exchange, "onething.intake.x");
        assert_eq!(t.intake_queue, "onething.gateway.intake.x");
        assert_eq!(t.dead_exchange, "onething.dlx.x");
        assert_eq!(t.dead_queue, "onething.gateway.dead.x");
        assert_eq!(t.events_exchange, "onething.events.x");
        assert!(t.validate().is_ok());
    }
}
