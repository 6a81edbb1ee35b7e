//! The consuming side: an [`Intake`] is a stream of [`Inbound`] messages from the intake queue that
//! survives reconnections (its consumer is re-subscribed on every new session), with manual acks.

use super::{BrokerError, Shared, session::Session, session::closed_signal};
use lapin::{
    Acker, BasicProperties, Channel, Consumer,
    message::{Delivery, DeliveryResult},
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions},
    types::FieldTable,
};
use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::{Mutex, mpsc, watch};
use tracing::debug;

/// Bound on sending an ack (the frame is only queued; a dead connection must not hang the caller).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// One inbound message from the intake queue.
pub struct Inbound {
    /// The body, as received.
    pub body: Vec<u8>,
    /// The routing key it was published with (not trusted for telling kinds apart).
    pub routing_key: String,
    /// Whether the broker delivered it before (an earlier consumer did not ack it).
    pub redelivered: bool,
    /// The `content_type` property, when set.
    pub content_type: Option<String>,
    /// The `message_id` property, when set.
    pub message_id: Option<String>,
    /// The exchange it was published to.
    pub exchange: String,
    pub(crate) properties: BasicProperties,
    acker: Acker,
    generation: u64,
    live: Option<Arc<AtomicU64>>,
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("routing_key", &self.routing_key)
            .field("redelivered", &self.redelivered)
            .field("content_type", &self.content_type)
            .field("message_id", &self.message_id)
            .field("bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Inbound {
    fn from_delivery(delivery: Delivery, generation: u64, live: Arc<AtomicU64>) -> Inbound {
        let properties = delivery.properties;
        Inbound {
            body: delivery.data,
            routing_key: delivery.routing_key.to_string(),
            redelivered: delivery.redelivered,
            content_type: properties.content_type().as_ref().map(|s| s.to_string()),
            message_id: properties.message_id().as_ref().map(|s| s.to_string()),
            exchange: delivery.exchange.to_string(),
            properties,
            acker: delivery.acker,
            generation,
            live: Some(live),
        }
    }

    /// A message tied to no delivery (tests, replays): [`Inbound::ack`] does nothing, and
    /// [`super::Broker::dead_letter`] republishes it like any other.
    pub fn detached(body: Vec<u8>, routing_key: &str, content_type: Option<&str>) -> Inbound {
        let mut properties = BasicProperties::default();
        if let Some(ct) = content_type {
            properties = properties.with_content_type(ct.into());
        }
        let delivery = Delivery::mock(0, "".into(), routing_key.into(), false, Vec::new());
        Inbound {
            body,
            routing_key: routing_key.to_string(),
            redelivered: false,
            content_type: content_type.map(str::to_string),
            message_id: None,
            exchange: String::new(),
            properties,
            acker: delivery.acker,
            generation: 0,
            live: None,
        }
    }

    /// The message's headers, as received (for audit).
    pub fn headers(&self) -> Option<&FieldTable> {
        self.properties.headers().as_ref()
    }

    /// Whether the channel it came on is gone (an ack would be refused; the broker redelivers it).
    pub fn is_stale(&self) -> bool {
        match &self.live {
            None => false,
            Some(live) => self.acker.poisoned() || live.load(Ordering::SeqCst) != self.generation,
        }
    }

    /// Acknowledges the message: the broker forgets it. Fails if the channel it came on is gone
    /// ([`BrokerError::StaleDelivery`]: the broker will deliver it again).
    pub async fn ack(&self) -> Result<(), BrokerError> {
        self.settle(self.acker.ack(BasicAckOptions::default()))
            .await
    }

    /// Hands the message back: `requeue` true puts it back on the queue (delivered again later),
    /// false drops it (only for messages already dead-lettered by other means).
    pub async fn reject(&self, requeue: bool) -> Result<(), BrokerError> {
        self.settle(self.acker.reject(BasicRejectOptions { requeue }))
            .await
    }

    async fn settle(
        &self,
        op: impl Future<Output = lapin::Result<bool>>,
    ) -> Result<(), BrokerError> {
        if self.is_stale() {
            return Err(BrokerError::StaleDelivery);
        }
        match tokio::time::timeout(ACK_TIMEOUT, op).await {
            Err(_) => Err(BrokerError::Timeout),
            Ok(Err(err)) => Err(BrokerError::Amqp(err)),
            Ok(Ok(false)) => Err(BrokerError::StaleDelivery),
            Ok(Ok(true)) => Ok(()),
        }
    }
}

/// A stream of inbound messages; see [`super::Broker::consume`].
pub struct Intake {
    slot: Arc<Slot>,
    rx: mpsc::UnboundedReceiver<Inbound>,
    closed: watch::Receiver<bool>,
    shared: Arc<Shared>,
}

impl Intake {
    pub(crate) fn new(shared: Arc<Shared>, prefetch: u16) -> (Intake, Arc<Slot>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let slot = Arc::new(Slot {
            id: shared.next_slot_id(),
            prefetch,
            tx,
            attached: Mutex::new(None),
            dropped: AtomicBool::new(false),
        });
        let intake = Intake {
            slot: slot.clone(),
            rx,
            closed: shared.closed.subscribe(),
            shared,
        };
        (intake, slot)
    }

    /// The next message; waits across outages. `None` only once the broker is closed.
    pub async fn next(&mut self) -> Option<Inbound> {
        loop {
            if *self.closed.borrow() {
                return None;
            }
            tokio::select! {
                biased;
                _ = closed_signal(&mut self.closed) => return None,
                msg = self.rx.recv() => match msg {
                    None => return None,
                    Some(msg) if msg.is_stale() => {
                        debug!("skipping a delivery of a lost channel; the broker redelivers it");
                    }
                    Some(msg) => return Some(msg),
                },
            }
        }
    }

    /// Stops consuming: closes this consumer's channel, so the broker requeues every message
    /// delivered to it and not yet acked.
    pub async fn cancel(self) {
        self.shared.remove_slot(self.slot.id);
        self.slot.detach().await;
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.shared.remove_slot(self.slot.id);
        self.slot.dropped.store(true, Ordering::SeqCst);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let slot = self.slot.clone();
            handle.spawn(async move { slot.detach().await });
        }
    }
}

/// The broker-side registration of one intake: re-attached to every new session.
pub(crate) struct Slot {
    pub(crate) id: u64,
    prefetch: u16,
    tx: mpsc::UnboundedSender<Inbound>,
    attached: Mutex<Option<Attached>>,
    dropped: AtomicBool,
}

struct Attached {
    generation: u64,
    channel: Channel,
    _consumer: Consumer,
    cancelled: Arc<AtomicBool>,
}

impl Slot {
    /// Makes sure this intake consumes on `session`. `Ok(true)`: consuming; `Ok(false)`: its channel
    /// is being recovered by lapin; `Err`: the consumer is gone or could not be set up.
    pub(crate) async fn ensure_attached(
        &self,
        shared: &Shared,
        session: &Session,
    ) -> Result<bool, BrokerError> {
        let mut attached = self.attached.lock().await;
        if self.dropped.load(Ordering::SeqCst) {
            return Ok(true);
        }
        if let Some(a) = attached.as_ref()
            && a.generation == session.generation
        {
            if a.cancelled.load(Ordering::SeqCst) {
                return Err(BrokerError::Invalid(
                    "the broker cancelled the intake consumer".into(),
                ));
            }
            let status = a.channel.status();
            if status.connected() {
                return Ok(true);
            }
            if status.reconnecting() || status.initializing() {
                return Ok(false);
            }
            return Err(BrokerError::Invalid("the intake channel was closed".into()));
        }
        let channel = session.connection.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                super::short(&shared.topology.intake_queue)?,
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let cancelled = Arc::new(AtomicBool::new(false));
        let (tx, flag, live, generation) = (
            self.tx.clone(),
            cancelled.clone(),
            shared.live.clone(),
            session.generation,
        );
        // The delegate forwards synchronously, so the order of deliveries is kept.
        consumer.set_delegate(move |delivery: DeliveryResult| {
            match delivery {
                Ok(Some(delivery)) => {
                    let _ = tx.send(Inbound::from_delivery(delivery, generation, live.clone()));
                }
                Ok(None) => flag.store(true, Ordering::SeqCst),
                Err(err) => debug!(error = %err, "intake consumer interrupted"),
            }
            std::future::ready(())
        });
        *attached = Some(Attached {
            generation: session.generation,
            channel,
            _consumer: consumer,
            cancelled,
        });
        Ok(true)
    }

    /// Closes this intake's channel, if any.
    async fn detach(&self) {
        self.dropped.store(true, Ordering::SeqCst);
        let taken = self.attached.lock().await.take();
        if let Some(a) = taken {
            a.cancelled.store(true, Ordering::SeqCst);
            if a.channel.status().connected() {
                let close = a.channel.close(200, "OK".into());
                let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
            }
        }
    }
}
