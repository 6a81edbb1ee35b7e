//! The broker edge against the real RabbitMQ on 127.0.0.1:5672: topology, consuming and acks,
//! dead letters, events, quorum queues, and resumption through a small TCP proxy that the test
//! cuts and restores (the shared broker itself is never stopped).

use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    message::Delivery,
    options::{
        BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions,
        QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};
use onething::broker::{
    Broker, BrokerError, BrokerState, EventMessage, Inbound, Intake, QueueType, Topology,
};
use serde_json::json;
use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DEADLINE: Duration = Duration::from_secs(60);

fn topology(test: &str) -> Topology {
    Topology::with_suffix(&format!(".test.{}.{test}", std::process::id()))
}

/// A test's own plain connection to RabbitMQ, for publishing, checking and cleaning up.
struct Rig {
    t: Topology,
    conn: Connection,
    ch: Channel,
}

impl Rig {
    async fn new(t: &Topology) -> Rig {
        let conn = Connection::connect(URL, ConnectionProperties::default())
            .await
            .expect("test connection");
        let ch = conn.create_channel().await.expect("test channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        Rig {
            t: t.clone(),
            conn,
            ch,
        }
    }

    /// Publishes to `exchange` and waits for the broker's confirm.
    async fn publish(&self, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
        let opts = BasicPublishOptions::default();
        let sent = self
            .ch
            .basic_publish(exchange.into(), key.into(), opts, body, props);
        let confirm = sent.await.expect("publish").await.expect("confirm");
        assert!(confirm.is_ack());
    }

    /// Publishes like the platform: to the intake exchange, no properties.
    async fn submit(&self, key: &str, body: &[u8]) {
        let exchange = self.t.intake_exchange.clone();
        self.publish(&exchange, key, body, BasicProperties::default())
            .await;
    }

    async fn get(&self, queue: &str) -> Option<Delivery> {
        let opts = BasicGetOptions { no_ack: true };
        let got = self.ch.basic_get(queue.into(), opts).await.expect("get");
        got.map(|m| m.delivery)
    }

    async fn message_count(&self, queue: &str) -> u32 {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = self
            .ch
            .queue_declare(queue.into(), passive, FieldTable::default());
        declared.await.expect("passive declare").message_count()
    }

    /// Declares a queue of the test's own bound to the events exchange; returns its name.
    async fn event_queue(&self, name: &str, key: &str) -> String {
        let name = format!("{}.{name}", self.t.events_exchange);
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let (ch, none) = (&self.ch, FieldTable::default);
        ch.queue_declare(name.as_str().into(), durable, none())
            .await
            .expect("declare");
        let exchange = self.t.events_exchange.as_str().into();
        ch.queue_bind(
            name.as_str().into(),
            exchange,
            key.into(),
            QueueBindOptions::default(),
            none(),
        )
        .await
        .expect("bind");
        name
    }

    /// Deletes the topology and `queues`, and closes the connection.
    async fn finish(self, queues: &[&str]) {
        let (t, ch) = (&self.t, &self.ch);
        for q in [t.intake_queue.as_str(), t.dead_queue.as_str()]
            .iter()
            .chain(queues)
        {
            let opts = QueueDeleteOptions::default();
            ch.queue_delete((*q).into(), opts)
                .await
                .expect("delete queue");
        }
        for e in [&t.intake_exchange, &t.dead_exchange, &t.events_exchange] {
            let opts = ExchangeDeleteOptions::default();
            ch.exchange_delete(e.as_str().into(), opts)
                .await
                .expect("delete exchange");
        }
        self.conn.close(200, "OK".into()).await.expect("close");
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn next(intake: &mut Intake) -> Inbound {
    within("a delivery", intake.next())
        .await
        .expect("intake ended")
}

/// Waits (bounded) until `cond` holds, checking it every few milliseconds.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref()?.inner().get(key)
}

fn str_of(value: &Option<ShortString>) -> Option<&str> {
    value.as_ref().map(ShortString::as_str)
}

fn text(value: Option<&AMQPValue>) -> String {
    match value {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        other => panic!("not a string header: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn topology_is_declared_and_idempotent() {
    let t = topology("topology");
    let broker = Broker::connect(URL, t.clone()).await.expect("connect");
    assert!(broker.is_connected());
    assert_eq!(broker.state(), BrokerState::Connected);
    let again = Broker::connect(URL, t.clone()).await.expect("twice");
    assert!(again.is_connected());

    let rig = Rig::new(&t).await;
    for (key, routed) in [("submission", true), ("withdrawal", true), ("other", false)] {
        rig.submit(key, key.as_bytes()).await;
        let got = rig.get(&t.intake_queue).await;
        assert_eq!(got.is_some(), routed, "routing key {key}");
    }
    let none = BasicProperties::default;
    rig.publish(&t.dead_exchange, "any", b"dead", none()).await;
    assert_eq!(rig.get(&t.dead_queue).await.expect("dead").data, b"dead");
    // The events exchange is a topic exchange.
    let probe = rig.event_queue("probe", "item.*").await;
    rig.publish(&t.events_exchange, "item.accepted", b"e", none())
        .await;
    rig.publish(&t.events_exchange, "case.received", b"e", none())
        .await;
    assert!(rig.get(&probe).await.is_some());
    assert!(rig.get(&probe).await.is_none());
    // A queue of another type under the same name is a configuration error, not an outage.
    let mut quorum = t.clone();
    quorum.queue_type = QueueType::Quorum;
    let err = Broker::connect(URL, quorum).await.expect_err("mismatch");
    assert!(matches!(err, BrokerError::Amqp(_)), "{err}");

    again.close().await;
    broker.close().await;
    assert_eq!(broker.state(), BrokerState::Closed);
    let late = broker
        .publish_event(&event("e", "c", "case.received"))
        .await;
    assert!(matches!(late, Err(BrokerError::Closed)));
    rig.finish(&[&probe]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn consume_ack_and_redelivery() {
    let t = topology("consume");
    let broker = Broker::connect(URL, t.clone()).await.expect("connect");
    let rig = Rig::new(&t).await;
    let json = BasicProperties::default().with_content_type("application/json".into());
    rig.publish(&t.intake_exchange, "submission", b"{\"n\":1}", json)
        .await;

    // Not acked, and the consumer's channel closes: the broker delivers it again.
    let mut first = broker.consume(1).await.expect("consume");
    let msg = next(&mut first).await;
    assert_eq!(msg.body, b"{\"n\":1}");
    assert_eq!(msg.routing_key, "submission");
    assert_eq!(msg.content_type.as_deref(), Some("application/json"));
    assert!(!msg.redelivered);
    first.cancel().await;
    assert!(matches!(msg.ack().await, Err(BrokerError::StaleDelivery)));

    let mut second = broker.consume(1).await.expect("consume");
    let again = next(&mut second).await;
    assert_eq!(again.body, b"{\"n\":1}");
    assert!(again.redelivered);
    again.ack().await.expect("ack");

    // Prefetch 1: the next message waits in the queue until the one delivered is acked.
    rig.submit("withdrawal", b"{\"n\":2}").await;
    rig.submit("submission", b"{\"n\":3}").await;
    let two = next(&mut second).await;
    assert_eq!(two.routing_key, "withdrawal");
    assert_eq!(two.content_type, None);
    assert_eq!(rig.message_count(&t.intake_queue).await, 1);
    two.ack().await.expect("ack");
    let three = next(&mut second).await;
    assert_eq!(three.body, b"{\"n\":3}");
    three.ack().await.expect("ack");

    // Acked: once the consumer's connection is gone nothing is left, nothing comes back.
    broker.close().await;
    assert!(second.next().await.is_none(), "close ends the intake");
    assert_eq!(rig.message_count(&t.intake_queue).await, 0);
    assert!(rig.get(&t.intake_queue).await.is_none());
    rig.finish(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_keeps_body_and_properties() {
    let t = topology("dead");
    let broker = Broker::connect(URL, t.clone()).await.expect("connect");
    let rig = Rig::new(&t).await;
    let mut headers = FieldTable::default();
    headers.insert("source".into(), AMQPValue::LongString("platform".into()));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id("msg-7".into())
        .with_correlation_id("410225-20260316-000123".into())
        .with_app_id("platform".into())
        .with_delivery_mode(2)
        .with_timestamp(1_773_600_000)
        .with_headers(headers);
    let body = "{\"schema\":\"onething.submission/v1\",\"x\":\"不合法\"".as_bytes();
    rig.publish(&t.intake_exchange, "submission", body, props.clone())
        .await;

    let mut intake = broker.consume(4).await.expect("consume");
    let msg = next(&mut intake).await;
    assert_eq!(msg.message_id.as_deref(), Some("msg-7"));
    let errors = json!([{"path": "", "message": "not json"}]);
    let sent = broker.dead_letter(&msg, "not json", &errors).await;
    sent.expect("dead letter");
    msg.ack().await.expect("ack");

    let dead = rig.get(&t.dead_queue).await.expect("in the dead queue");
    assert_eq!(dead.data, body);
    assert_eq!(dead.routing_key.as_str(), "submission");
    let p = &dead.properties;
    assert_eq!(p.content_type(), props.content_type());
    assert_eq!(p.message_id(), props.message_id());
    assert_eq!(p.correlation_id(), props.correlation_id());
    assert_eq!(p.app_id(), props.app_id());
    assert_eq!(p.delivery_mode(), props.delivery_mode());
    assert_eq!(p.timestamp(), props.timestamp());
    assert_eq!(text(header(p, "source")), "platform");
    assert_eq!(text(header(p, "x-onething-reason")), "not json");
    let listed = text(header(p, "x-onething-errors"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&listed).unwrap(),
        errors
    );

    // A detached message (no delivery) dead-letters the same way; its ack does nothing.
    let detached = Inbound::detached(b"raw".to_vec(), "withdrawal", None);
    let sent = broker
        .dead_letter(&detached, "unknown case", &json!([]))
        .await;
    sent.expect("dead letter");
    detached.ack().await.expect("no-op ack");
    let dead = rig.get(&t.dead_queue).await.expect("second dead letter");
    assert_eq!(dead.data, b"raw");
    let reason = text(header(&dead.properties, "x-onething-reason"));
    assert_eq!(reason, "unknown case");

    broker.close().await;
    rig.finish(&[]).await;
}

fn event<'a>(event_id: &'a str, case_id: &'a str, kind: &'a str) -> EventMessage<'a> {
    EventMessage {
        event_id,
        case_id,
        routing_key: kind,
        item: None,
        department: None,
        body: b"{}",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_event_is_persistent_and_labelled() {
    let t = topology("events");
    let broker = Broker::connect(URL, t.clone()).await.expect("connect");
    let rig = Rig::new(&t).await;
    let queue = rig.event_queue("platform", "#").await;

    let case = "410225-20260316-000123";
    let body = br#"{"schema":"onething.event/v1","type":"item.accepted"}"#;
    let ev = EventMessage {
        item: Some("hukou"),
        department: Some("police"),
        body,
        ..event("0195f3a0-ev-1", case, "item.accepted")
    };
    broker.publish_event(&ev).await.expect("publish");
    let ev2 = event("0195f3a0-ev-2", case, "case.received");
    broker.publish_event(&ev2).await.expect("publish");

    let first = rig.get(&queue).await.expect("first event");
    assert_eq!(first.routing_key.as_str(), "item.accepted");
    assert_eq!(first.data, body);
    let p = &first.properties;
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(str_of(p.message_id()), Some("0195f3a0-ev-1"));
    assert_eq!(str_of(p.correlation_id()), Some(case));
    assert_eq!(str_of(p.content_type()), Some("application/json"));
    assert!(p.timestamp().is_some());
    assert_eq!(text(header(p, "case_id")), case);
    assert_eq!(text(header(p, "item")), "hukou");
    assert_eq!(text(header(p, "department")), "police");

    let second = rig.get(&queue).await.expect("second event");
    assert_eq!(second.routing_key.as_str(), "case.received");
    assert!(header(&second.properties, "item").is_none());
    assert!(header(&second.properties, "department").is_none());
    assert_eq!(text(header(&second.properties, "case_id")), case);

    let too_long = "x".repeat(300);
    let err = broker
        .publish_event(&event(&too_long, "c", "case.received"))
        .await;
    assert!(matches!(err, Err(BrokerError::Invalid(_))));

    broker.close().await;
    rig.finish(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quorum_intake_queue() {
    let mut t = topology("quorum");
    t.queue_type = QueueType::Quorum;
    let broker = Broker::connect(URL, t.clone()).await.expect("connect");
    let rig = Rig::new(&t).await;
    // It really is a quorum queue: declaring it classic is refused.
    let mut classic = FieldTable::default();
    classic.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let probe = rig.conn.create_channel().await.expect("channel");
    let refused = probe.queue_declare(t.intake_queue.as_str().into(), durable, classic);
    assert!(refused.await.is_err(), "declared a quorum queue as classic");

    rig.submit("submission", b"q").await;
    let mut intake = broker.consume(2).await.expect("consume");
    let msg = next(&mut intake).await;
    assert_eq!(msg.body, b"q");
    msg.ack().await.expect("ack");
    broker.close().await;
    assert_eq!(rig.message_count(&t.intake_queue).await, 0);
    rig.finish(&[]).await;
}

/// A TCP proxy to RabbitMQ that can refuse connections (accept and hang up at once) and cut the
/// ones it forwards.
struct Proxy {
    addr: SocketAddr,
    forward: watch::Sender<bool>,
    epoch: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (forward, _) = watch::channel(false);
        let (epoch, _) = watch::channel(0u64);
        let (fwd, ep) = (forward.subscribe(), epoch.subscribe());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*fwd.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut = ep.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect("127.0.0.1:5672").await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            forward,
            epoch,
            task,
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    fn restore(&self) {
        self.forward.send_replace(true);
    }

    /// Refuses new connections and drops the forwarded ones.
    fn cut(&self) {
        self.forward.send_replace(false);
        self.epoch.send_modify(|e| *e += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Publishes like the outbox does: retrying until the broker confirms (bounded).
async fn publish_until_confirmed(broker: &Broker, ev: &EventMessage<'_>) {
    let start = Instant::now();
    while let Err(err) = broker.publish_event(ev).await {
        assert!(err.is_transient(), "{err}");
        assert!(start.elapsed() < DEADLINE, "never confirmed: {err}");
        within("the connection", broker.wait_connected())
            .await
            .expect("not closed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resumes_after_the_connection_is_lost() {
    let t = topology("resume");
    let proxy = Proxy::start().await;

    // Unreachable at first: connect still returns a broker, which keeps trying.
    let url = proxy.url();
    let connecting = Broker::connect(&url, t.clone());
    let broker = within("connect", connecting).await.expect("connect");
    assert!(!broker.is_connected());
    assert_eq!(broker.state(), BrokerState::Reconnecting);
    let err = broker
        .publish_event(&event("e0", "c", "case.received"))
        .await;
    assert!(matches!(err, Err(BrokerError::NotConnected)), "{err:?}");
    let mut intake = broker.consume(1).await.expect("consume while down");
    proxy.restore();
    let up = within("the first connection", broker.wait_connected()).await;
    up.expect("connected");

    let rig = Rig::new(&t).await;
    let queue = rig.event_queue("platform", "#").await;
    let e1 = broker
        .publish_event(&event("e1", "c", "case.received"))
        .await;
    e1.expect("publish");
    rig.submit("submission", b"one").await;
    let one = next(&mut intake).await;
    assert_eq!(one.body, b"one");
    one.ack().await.expect("ack");

    // A short cut: lapin's recovery (or ours) brings the session back.
    proxy.cut();
    wait_until("the loss to be noticed", || !broker.is_connected()).await;
    proxy.restore();
    publish_until_confirmed(&broker, &event("e2", "c", "item.waiting")).await;

    // A long cut: lapin gives up, our own reconnection takes over once the proxy is back.
    proxy.cut();
    let given_up = || broker.state() == BrokerState::Reconnecting;
    wait_until("the session to be given up", given_up).await;
    let err = broker
        .publish_event(&event("e3", "c", "item.dispatched"))
        .await;
    assert!(matches!(err, Err(BrokerError::NotConnected)), "{err:?}");
    proxy.restore();
    publish_until_confirmed(&broker, &event("e3", "c", "item.dispatched")).await;

    // Consuming resumed too: the intake was re-subscribed on the new connection. An ack can be
    // lost with the connection it was sent on, so "one" may come again, but only as redelivered.
    rig.submit("submission", b"two").await;
    loop {
        let msg = next(&mut intake).await;
        msg.ack().await.expect("ack");
        if msg.body == b"two" {
            break;
        }
        assert_eq!(msg.body, b"one");
        assert!(msg.redelivered);
    }

    // Every event arrived, in order (a retried one possibly twice).
    let mut seen = Vec::new();
    while let Some(msg) = rig.get(&queue).await {
        seen.push(str_of(msg.properties.message_id()).expect("id").to_string());
    }
    seen.dedup();
    assert_eq!(seen, ["e1", "e2", "e3"]);

    broker.close().await;
    assert!(intake.next().await.is_none());
    rig.finish(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_login_is_an_error_not_an_outage() {
    let t = topology("login");
    let err = within(
        "the refusal",
        Broker::connect("amqp://guest:wrong@127.0.0.1:5672/%2f", t),
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, BrokerError::Amqp(_)), "{err}");
    assert!(err.to_string().contains("ACCESS_REFUSED"), "{err}");
    let vhost = "amqp://guest:guest@127.0.0.1:5672/no-such-vhost";
    let refused = within("the refusal", Broker::connect(vhost, topology("vhost"))).await;
    assert!(matches!(refused, Err(BrokerError::Amqp(_))), "{refused:?}");
}
