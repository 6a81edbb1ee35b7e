//! The broker edge (amqp.md): declares the topology, consumes the intake queue with manual acks,
//! publishes events and dead letters with publisher confirms, and keeps all of it going across
//! broker outages (lapin auto-recovery, and on top of it our own reconnection with back-off).
//!
//! | module | job |
//! | --- | --- |
//! | [`topology`] | names (defaults, environment, test suffixes) and their declaration |
//! | `session` | one connection, and the supervisor that replaces it when it is lost for good |
//! | `intake` | [`Intake`] / [`Inbound`]: the consuming side |

mod intake;
mod session;
pub mod topology;

pub use intake::{Inbound, Intake};
pub use topology::{QueueType, Topology};

use intake::Slot;
use lapin::{
    BasicProperties, Confirmation,
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use session::Session;
use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::{sync::watch, task::JoinHandle};
use tracing::warn;

/// Bound on one publish, from sending to the broker's confirm.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to the broker. Every variant but [`BrokerError::Invalid`] and
/// [`BrokerError::Closed`] is transient: retry later.
#[derive(Debug, Clone)]
pub enum BrokerError {
    /// A URL, name, routing key or property that AMQP cannot carry.
    Invalid(String),
    /// No usable connection right now; the broker edge is reconnecting in the background.
    NotConnected,
    /// The broker refused the message (publisher confirm nack).
    Nacked,
    /// The message could not be routed to any queue (dead letters are published mandatory).
    Unroutable,
    /// The broker did not answer in time.
    Timeout,
    /// The delivery came on a channel that is gone; the broker will deliver it again.
    StaleDelivery,
    /// [`Broker::close`] was called.
    Closed,
    /// An error of the AMQP client (connection, channel or protocol).
    Amqp(lapin::Error),
}

impl BrokerError {
    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, BrokerError::Invalid(_) | BrokerError::Closed)
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::Invalid(why) => write!(f, "invalid broker request: {why}"),
            BrokerError::NotConnected => f.write_str("the broker is not connected (reconnecting)"),
            BrokerError::Nacked => f.write_str("the broker refused the message (nack)"),
            BrokerError::Unroutable => f.write_str("the message could not be routed to any queue"),
            BrokerError::Timeout => f.write_str("the broker did not answer in time"),
            BrokerError::StaleDelivery => {
                f.write_str("the delivery's channel is gone; the broker will redeliver it")
            }
            BrokerError::Closed => f.write_str("the broker connection was closed"),
            BrokerError::Amqp(err) => write!(f, "AMQP error: {err}"),
        }
    }
}

impl std::error::Error for BrokerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BrokerError::Amqp(err) => Some(err),
            _ => None,
        }
    }
}

impl From<lapin::Error> for BrokerError {
    fn from(err: lapin::Error) -> Self {
        BrokerError::Amqp(err)
    }
}

/// One outbound event (amqp.md "Outbound events"); `body` is the event's JSON.
#[derive(Debug, Clone, Copy)]
pub struct EventMessage<'a> {
    pub event_id: &'a str,
    pub case_id: &'a str,
    /// The event's `type`, e.g. `item.accepted`.
    pub routing_key: &'a str,
    pub item: Option<&'a str>,
    pub department: Option<&'a str>,
    pub body: &'a [u8],
}

/// Where the connection stands (for `/readyz` and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    /// Up: consuming and publishing work.
    Connected,
    /// The connection dropped and lapin's auto-recovery is re-establishing it.
    Recovering,
    /// No connection; the broker edge is opening a new one with back-off.
    Reconnecting,
    /// [`Broker::close`] was called.
    Closed,
}

/// State shared by the [`Broker`] handles, the supervisor task and the intakes.
pub(crate) struct Shared {
    url: String,
    topology: Topology,
    /// The current session; `None` while reconnecting.
    session: watch::Sender<Option<Arc<Session>>>,
    /// The generation of the installed session (0 when none): older deliveries are stale.
    live: Arc<AtomicU64>,
    generations: AtomicU64,
    closed: watch::Sender<bool>,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    slot_ids: AtomicU64,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn next_slot_id(&self) -> u64 {
        self.slot_ids.fetch_add(1, Ordering::SeqCst)
    }

    fn install(&self, session: Option<Arc<Session>>) {
        let generation = session.as_ref().map_or(0, |s| s.generation);
        self.live.store(generation, Ordering::SeqCst);
        self.session.send_replace(session);
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.session.borrow().clone()
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.values().cloned().collect()
    }

    fn remove_slot(&self, id: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.remove(&id);
    }

    /// The session to publish on, if usable now.
    fn usable(&self) -> Result<Arc<Session>, BrokerError> {
        if *self.closed.borrow() {
            return Err(BrokerError::Closed);
        }
        match self.current() {
            Some(session) if session.usable() => Ok(session),
            _ => Err(BrokerError::NotConnected),
        }
    }
}

/// Closes everything when the last [`Broker`] clone is dropped.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.closed.send_replace(true);
    }
}

/// The connection to RabbitMQ; clones are cheap and share it.
#[derive(Clone)]
pub struct Broker {
    handle: Arc<Handle>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("topology", &self.shared().topology)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Broker {
    fn shared(&self) -> &Arc<Shared> {
        &self.handle.0
    }

    /// Connects (URL like `amqp://guest:guest@127.0.0.1:5672/%2f`), declares the topology
    /// idempotently and opens a confirm-mode channel for publishing.
    ///
    /// Errors only for what retrying cannot fix: a malformed URL or name, or a broker that refuses
    /// the first connection at the protocol level (login refused, unknown vhost, a queue that
    /// exists with other arguments). An unreachable broker is not an error: the returned `Broker`
    /// keeps reconnecting in the background (see [`Broker::is_connected`],
    /// [`Broker::wait_connected`]), and its calls fail with [`BrokerError::NotConnected`] meanwhile.
    pub async fn connect(url: &str, topology: Topology) -> Result<Broker, BrokerError> {
        topology.validate().map_err(BrokerError::Invalid)?;
        url.parse::<lapin::uri::AMQPUri>()
            .map_err(|e| BrokerError::Invalid(format!("broker URL: {e}")))?;
        let (session, _) = watch::channel(None);
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            url: url.to_string(),
            topology,
            session,
            live: Arc::new(AtomicU64::new(0)),
            generations: AtomicU64::new(0),
            closed,
            slots: Mutex::new(HashMap::new()),
            slot_ids: AtomicU64::new(1),
            supervisor: Mutex::new(None),
        });
        let first = match Session::open(&shared, shared.next_generation()).await {
            Ok(session) => Some(Arc::new(session)),
            Err(err) if session::is_permanent(&err) => return Err(BrokerError::Amqp(err)),
            Err(err) => {
                warn!(error = %err, "broker unreachable at start; retrying in the background");
                None
            }
        };
        // Installed before returning, so that a fresh broker reports itself connected.
        shared.install(first.clone());
        let task = tokio::spawn(session::supervise(shared.clone(), first));
        *shared.supervisor.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(Broker {
            handle: Arc::new(Handle(shared)),
        })
    }

    /// The topology this broker declared.
    pub fn topology(&self) -> &Topology {
        &self.shared().topology
    }

    /// Consumes the intake queue with manual acks and prefetch `prefetch` (0: unlimited, avoid),
    /// each intake on a channel of its own. The stream survives
    /// reconnections (it is re-subscribed on each new connection); while the broker is down it
    /// simply waits.
    pub async fn consume(&self, prefetch: u16) -> Result<Intake, BrokerError> {
        let shared = self.shared();
        if *shared.closed.borrow() {
            return Err(BrokerError::Closed);
        }
        let (intake, slot) = Intake::new(shared.clone(), prefetch);
        shared
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot.id, slot.clone());
        if let Ok(session) = shared.usable() {
            let attach = slot.ensure_attached(shared, &session);
            match tokio::time::timeout(session::ATTACH_TIMEOUT, attach).await {
                Ok(Ok(_)) => {}
                // The supervisor retries (and replaces the session if it stays broken).
                Ok(Err(err)) => warn!(error = %err, "intake consumer not attached yet"),
                Err(_) => warn!("intake consumer not attached yet: timed out"),
            }
        }
        Ok(intake)
    }

    /// Publishes one event, persistent, to the events exchange with its routing key, `message_id`
    /// = `event_id`, `correlation_id` = `case_id`, `content_type` `application/json`, `timestamp`
    /// (real clock, seconds) and headers `case_id`, `item`, `department` where given. Returns only
    /// once the broker confirmed it; a nack, a lost connection or a timeout is an error (retry).
    pub async fn publish_event(&self, ev: &EventMessage<'_>) -> Result<(), BrokerError> {
        let shared = self.shared();
        let mut headers = FieldTable::default();
        let fields = [
            ("case_id", Some(ev.case_id)),
            ("item", ev.item),
            ("department", ev.department),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                headers.insert(key.into(), AMQPValue::LongString(value.into()));
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(short(ev.event_id)?)
            .with_correlation_id(short(ev.case_id)?)
            .with_content_type("application/json".into())
            .with_timestamp(now)
            .with_headers(headers);
        let exchange = short(&shared.topology.events_exchange)?;
        let key = short(ev.routing_key)?;
        publish(shared, exchange, key, false, ev.body, properties).await
    }

    /// Republishes an inbound message unchanged (body and properties, routing key kept) to the
    /// dead-letter exchange, adding the headers `x-onething-reason` (short code) and
    /// `x-onething-errors` (JSON text); mandatory, with confirms.
    pub async fn dead_letter(
        &self,
        msg: &Inbound,
        reason: &str,
        errors: &serde_json::Value,
    ) -> Result<(), BrokerError> {
        let shared = self.shared();
        let mut headers = msg.properties.headers().clone().unwrap_or_default();
        headers.insert(
            "x-onething-reason".into(),
            AMQPValue::LongString(reason.into()),
        );
        headers.insert(
            "x-onething-errors".into(),
            AMQPValue::LongString(LongString::from(errors.to_string())),
        );
        let properties = msg.properties.clone().with_headers(headers);
        let exchange = short(&shared.topology.dead_exchange)?;
        let key = short(&msg.routing_key)?;
        publish(shared, exchange, key, true, &msg.body, properties).await
    }

    /// Re-submits a message to the intake exchange (dead-letter replay): persistent, mandatory
    /// (an unbound routing key is an error, not a silent drop), with confirms, and a header
    /// `x-onething-replay-of` naming the dead letter it replays.
    pub async fn resubmit(
        &self,
        routing_key: &str,
        body: &[u8],
        replay_of: i64,
    ) -> Result<(), BrokerError> {
        let shared = self.shared();
        let mut headers = FieldTable::default();
        headers.insert(
            "x-onething-replay-of".into(),
            AMQPValue::LongLongInt(replay_of),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(headers);
        let exchange = short(&shared.topology.intake_exchange)?;
        let key = short(routing_key)?;
        publish(shared, exchange, key, true, body, properties).await
    }

    /// Whether the connection (and its publish channel) is up now (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        self.shared().usable().is_ok()
    }

    /// Where the connection stands now.
    pub fn state(&self) -> BrokerState {
        let shared = self.shared();
        if *shared.closed.borrow() {
            return BrokerState::Closed;
        }
        match shared.current() {
            Some(session) if session.usable() => BrokerState::Connected,
            Some(_) => BrokerState::Recovering,
            None => BrokerState::Reconnecting,
        }
    }

    /// Waits until the connection is up (or the broker is closed: then [`BrokerError::Closed`]).
    /// Callers bound it with their own timeout.
    pub async fn wait_connected(&self) -> Result<(), BrokerError> {
        let shared = self.shared();
        let mut sessions = shared.session.subscribe();
        loop {
            match shared.usable() {
                Ok(_) => return Ok(()),
                Err(BrokerError::Closed) => return Err(BrokerError::Closed),
                Err(_) => {}
            }
            // A session can also become usable without a new value (lapin recovered it).
            let _ = tokio::time::timeout(Duration::from_millis(100), sessions.changed()).await;
        }
    }

    /// Closes the connection and stops reconnecting; intakes end (`next` returns `None`), and
    /// messages delivered but not acked go back to the queue.
    pub async fn close(&self) {
        let shared = self.shared();
        shared.closed.send_replace(true);
        let task = shared
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// Publishes with confirms on the current session.
async fn publish(
    shared: &Shared,
    exchange: ShortString,
    routing_key: ShortString,
    mandatory: bool,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), BrokerError> {
    let session = shared.usable()?;
    let options = BasicPublishOptions {
        mandatory,
        ..BasicPublishOptions::default()
    };
    let confirmed = async {
        let confirm = session
            .publisher
            .basic_publish(exchange, routing_key, options, body, properties)
            .await?;
        confirm.await
    };
    match tokio::time::timeout(PUBLISH_TIMEOUT, confirmed).await {
        Err(_) => Err(BrokerError::Timeout),
        Ok(Err(err)) => Err(BrokerError::Amqp(err)),
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(_)))) => Err(BrokerError::Unroutable),
        Ok(Ok(Confirmation::Nack(_))) => Err(BrokerError::Nacked),
        Ok(Ok(Confirmation::NotRequested)) => Err(BrokerError::Invalid(
            "the publish channel is not in confirm mode".into(),
        )),
    }
}

/// An AMQP short string (at most 255 bytes).
fn short(text: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(text)
        .map_err(|_| BrokerError::Invalid(format!("`{text:.40}…` is longer than 255 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn malformed_url_or_name_is_refused_before_connecting() {
        let bad_url = Broker::connect("not a url", Topology::defaults()).await;
        assert!(matches!(bad_url, Err(BrokerError::Invalid(_))));
        let mut reserved = Topology::defaults();
        reserved.intake_queue = "amq.gateway".into();
        let bad_name = Broker::connect("amqp://127.0.0.1:1/%2f", reserved).await;
        assert!(matches!(bad_name, Err(BrokerError::Invalid(_))));
        assert!(!BrokerError::Invalid(String::new()).is_transient());
        assert!(BrokerError::NotConnected.is_transient());
    }
}
