//! One broker connection ("session") and the supervisor that keeps one alive: lapin's own
//! auto-recovery handles short outages; when it gives up (or takes too long) the supervisor retires
//! the connection and opens a new one with back-off, re-declaring the topology and re-subscribing
//! every intake consumer.

use super::{Shared, topology};
use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::{
    Channel, Connection, ConnectionProperties,
    options::ConfirmSelectOptions,
    tcp::{AMQPUriTcpExt, TLSConfig},
    uri::AMQPUri,
};
use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

/// Bound on one TCP (and TLS) connect.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on opening a whole session (handshake, declarations, publish channel).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a session may stay unusable (lapin recovering) before the supervisor replaces it.
/// Short on purpose: lapin (4.12) can leave a connection whose recovery it abandoned in the
/// `Reconnecting` state for good (a queued recovery command overwrites its `Error` state), so
/// "still recovering" and "given up" look alike; replacing a session that lapin would have
/// recovered costs only a re-declaration.
const RECOVERY_GRACE: Duration = Duration::from_secs(5);
/// How often the supervisor looks at the session's health.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Bound on subscribing one intake consumer (channel, qos, consume).
pub(crate) const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a graceful connection close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection with its confirm-mode publish channel (on which the topology was declared).
pub(crate) struct Session {
    pub(crate) generation: u64,
    pub(crate) connection: Connection,
    pub(crate) publisher: Channel,
    /// Once set, lapin's reconnection attempts for this connection fail at once, so a retired
    /// connection never comes back to life with our consumers on it.
    abandoned: Arc<AtomicBool>,
}

impl Session {
    /// Whether the connection and the publish channel are up now.
    pub(crate) fn usable(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }

    /// Opens a connection (lapin auto-recovery on, short lapin back-off), declares the topology and
    /// opens the confirm-mode publish channel.
    pub(crate) async fn open(shared: &Shared, generation: u64) -> lapin::Result<Session> {
        let uri: AMQPUri = shared.url.parse().map_err(|e: String| {
            lapin::Error::from(io::Error::new(io::ErrorKind::InvalidInput, e))
        })?;
        let abandoned = Arc::new(AtomicBool::new(false));
        // Unless the session comes up, lapin must not keep reconnecting it, even when this
        // future is dropped half-way (the broker was closed meanwhile).
        let guard = AbandonUnlessKept(Some(abandoned.clone()));
        let attempt = Self::open_inner(uri, shared, generation, abandoned);
        let session = match tokio::time::timeout(OPEN_TIMEOUT, attempt).await {
            Ok(opened) => opened?,
            Err(_) => {
                let err = io::Error::new(io::ErrorKind::TimedOut, "opening the session timed out");
                return Err(err.into());
            }
        };
        guard.keep();
        Ok(session)
    }

    async fn open_inner(
        uri: AMQPUri,
        shared: &Shared,
        generation: u64,
        abandoned: Arc<AtomicBool>,
    ) -> lapin::Result<Session> {
        let properties = ConnectionProperties::default()
            .with_connection_name("onething-gateway".into())
            .enable_auto_recover()
            .with_backoff(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(1))
                    .with_max_times(5),
            );
        let runtime = lapin::runtime::default_runtime()?;
        let gate = abandoned.clone();
        let connection = Connection::connector(
            uri,
            runtime,
            async move |uri, runtime| {
                if gate.load(Ordering::SeqCst) {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "this broker connection was retired",
                    )
                    .into());
                }
                let connect = uri.connect_with_config_async(TLSConfig::default(), &runtime);
                match tokio::time::timeout(TCP_CONNECT_TIMEOUT, connect).await {
                    Ok(result) => result.map_err(lapin::Error::from),
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connecting to the broker timed out",
                    )
                    .into()),
                }
            },
            properties,
        )
        .await?;
        let publisher = connection.create_channel().await?;
        topology::declare(&publisher, &shared.topology).await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Session {
            generation,
            connection,
            publisher,
            abandoned,
        })
    }

    /// Retires the session: no more reconnections; a graceful close if it is up, else a watcher that
    /// closes it should a reconnection already under way complete after all.
    pub(crate) async fn retire(self: Arc<Self>) {
        self.abandoned.store(true, Ordering::SeqCst);
        if self.connection.status().connected() {
            let close = self.connection.close(200, "OK".into());
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
            return;
        }
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                let status = self.connection.status();
                if status.connected() {
                    let _ = tokio::time::timeout(
                        CLOSE_TIMEOUT,
                        self.connection.close(200, "OK".into()),
                    )
                    .await;
                    return;
                }
                if status.errored() || status.closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// Sets the flag on drop unless [`AbandonUnlessKept::keep`] was called.
struct AbandonUnlessKept(Option<Arc<AtomicBool>>);

impl AbandonUnlessKept {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonUnlessKept {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

/// Whether an error on the first connection attempt is a configuration problem rather than an
/// outage: login refused (403), a queue or exchange declared with other arguments (406), an unknown
/// vhost (530), or not an AMQP 0-9-1 server.
pub(crate) fn is_permanent(err: &lapin::Error) -> bool {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => matches!(amqp.get_id(), 403 | 406 | 530),
        lapin::ErrorKind::InvalidProtocolVersion(_) => true,
        _ => false,
    }
}

/// Our own back-off between session attempts (after lapin's recovery gave up): unbounded.
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Waits until `closed` turns true (or its sender is gone).
pub(crate) async fn closed_signal(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|c| *c).await;
}

/// The supervisor task: keeps a session up until the broker is closed.
pub(crate) async fn supervise(shared: Arc<Shared>, first: Option<Arc<Session>>) {
    let mut closed = shared.closed.subscribe();
    let mut delays = backoff();
    let mut next = first;
    loop {
        if *closed.borrow() {
            break;
        }
        let session = match next.take() {
            Some(session) => Some(session),
            None => {
                let generation = shared.next_generation();
                tokio::select! {
                    biased;
                    _ = closed_signal(&mut closed) => break,
                    opened = Session::open(&shared, generation) => match opened {
                        Ok(session) => Some(Arc::new(session)),
                        Err(err) => {
                            warn!(error = %err, "broker unreachable; retrying");
                            None
                        }
                    },
                }
            }
        };
        if let Some(session) = session {
            delays = backoff();
            info!(generation = session.generation, "broker session up");
            shared.install(Some(session.clone()));
            let reason = watch_session(&shared, &session, &mut closed).await;
            shared.install(None);
            session.retire().await;
            match reason {
                None => break,
                Some(reason) => warn!(reason, "broker session lost; resuming"),
            }
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(30));
        tokio::select! {
            biased;
            _ = closed_signal(&mut closed) => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    if let Some(session) = next.take() {
        session.retire().await;
    }
    shared.install(None);
}

/// Watches a live session: keeps every intake consumer attached to it, and returns why it is lost
/// (`None` when the broker was closed instead).
async fn watch_session(
    shared: &Shared,
    session: &Arc<Session>,
    closed: &mut watch::Receiver<bool>,
) -> Option<&'static str> {
    let mut unusable_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            biased;
            _ = closed_signal(closed) => return None,
            _ = tick.tick() => {}
        }
        let status = session.connection.status();
        if status.errored() || status.closed() {
            return Some("the connection is closed and lapin gave up recovering it");
        }
        let mut healthy = session.usable();
        if status.connected() {
            let publisher = session.publisher.status();
            if !publisher.connected() && !publisher.reconnecting() && !publisher.initializing() {
                return Some("the publish channel was closed");
            }
            for slot in shared.slots() {
                let attach = slot.ensure_attached(shared, session);
                match tokio::time::timeout(ATTACH_TIMEOUT, attach).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => healthy = false,
                    Ok(Err(err)) => {
                        warn!(error = %err, "intake consumer could not be attached");
                        return Some("an intake consumer could not be attached");
                    }
                    Err(_) => return Some("attaching an intake consumer timed out"),
                }
            }
        }
        if healthy {
            unusable_since = None;
        } else if unusable_since.get_or_insert_with(Instant::now).elapsed() > RECOVERY_GRACE {
            return Some("the connection did not recover in time");
        }
    }
}
