//! The platform's side of the broker, for the demo and the end-to-end tests: publishing to the
//! intake exchange, following every event, and removing a throw-away topology afterwards.

use lapin::BasicProperties;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use serde_json::Value;

use crate::broker::Topology;

/// An exclusive queue bound to every event, as the platform would have; `on_event` gets each one
/// that is JSON.
pub async fn follow_events(
    channel: &lapin::Channel,
    topology: &Topology,
    on_event: impl Fn(Value) + Send + Sync + 'static,
) -> Result<(), String> {
    let q = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    channel
        .queue_bind(
            q.name().clone(),
            topology.events_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let consumer = channel
        .basic_consume(
            q.name().clone(),
            "demo".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    consumer.set_delegate(move |d: lapin::message::DeliveryResult| {
        if let Ok(Some(d)) = d
            && let Ok(v) = serde_json::from_slice::<Value>(&d.data)
        {
            on_event(v);
        }
        std::future::ready(())
    });
    Ok(())
}

pub async fn publish(
    channel: &lapin::Channel,
    topology: &Topology,
    key: &str,
    body: &[u8],
) -> Result<(), String> {
    channel
        .basic_publish(
            topology.intake_exchange.as_str().into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2),
        )
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Deletes the queues and exchanges of `topology` (a demo or a test is over).
pub async fn delete_topology(channel: &lapin::Channel, topology: &Topology) {
    for q in [&topology.intake_queue, &topology.dead_queue] {
        let _ = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [
        &topology.intake_exchange,
        &topology.dead_exchange,
        &topology.events_exchange,
    ] {
        let _ = channel
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}
