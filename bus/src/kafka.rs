//! librdkafka client configuration and error classification, shared by the producers, the
//! consumer and the admin helper. Only standard Kafka protocol features are used (idempotent
//! produce, consumer groups, CreateTopics): the same code runs against Apache Kafka, Redpanda,
//! MSK or any compatible broker.

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::{ClientRole, ConfigError, KafkaConfig};

/// Settings the product enforces on the event and alert producers (R-BUS-2).
fn producer_settings(cfg: &KafkaConfig) -> Vec<(&'static str, String)> {
    let p = &cfg.producer;
    vec![
        ("enable.idempotence", "true".into()),
        ("acks", "all".into()),
        // Retry forever: an undeliverable event waits in memory, then in the spool, never
        // expires (the spool's cap is the bound).
        ("message.timeout.ms", "0".into()),
        ("compression.type", p.compression.as_str().into()),
        ("linger.ms", p.linger_ms.to_string()),
        ("batch.size", p.batch_max_bytes.to_string()),
        (
            "queue.buffering.max.messages",
            p.queue_max_events.to_string(),
        ),
        (
            "queue.buffering.max.kbytes",
            p.queue_max_bytes.div_ceil(1024).max(1).to_string(),
        ),
        ("client.id", p.client_id.clone()),
    ]
}

/// Settings the product enforces on the event consumer (at-least-once).
fn consumer_settings(cfg: &KafkaConfig) -> Vec<(&'static str, String)> {
    vec![
        ("group.id", cfg.consumer.group_id.clone()),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
        ("enable.partition.eof", "false".into()),
        ("client.id", cfg.producer.client_id.clone()),
    ]
}

/// The librdkafka configuration of a client in `role`: brokers, the enforced settings, then the
/// operator's passthrough options (already checked not to conflict), secret files read in.
pub(crate) fn client_config(
    cfg: &KafkaConfig,
    role: ClientRole,
) -> Result<ClientConfig, ConfigError> {
    let options = cfg.resolved_options()?;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","));
    if role == ClientRole::Consumer {
        // A new group starts at the beginning, so no event is skipped; overridable.
        c.set("auto.offset.reset", "earliest");
    }
    let enforced = match role {
        ClientRole::Producer => producer_settings(cfg),
        ClientRole::Consumer => consumer_settings(cfg),
    };
    for (k, v) in enforced {
        c.set(k, v);
    }
    for (k, v) in &options {
        if role == ClientRole::Producer && is_consumer_only(k) {
            continue;
        }
        if role == ClientRole::Consumer && is_producer_only(k) {
            continue;
        }
        c.set(k, v.to_librdkafka());
    }
    Ok(c)
}

/// An admin client's configuration: brokers and connection settings only.
pub(crate) fn admin_config(cfg: &KafkaConfig) -> Result<ClientConfig, ConfigError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","));
    c.set("client.id", cfg.producer.client_id.clone());
    for (k, v) in &cfg.resolved_options()? {
        if !is_consumer_only(k) && !is_producer_only(k) {
            c.set(k, v.to_librdkafka());
        }
    }
    Ok(c)
}

fn is_consumer_only(key: &str) -> bool {
    matches!(
        key,
        "enable.auto.commit"
            | "enable.auto.offset.store"
            | "auto.offset.reset"
            | "auto.commit.interval.ms"
            | "session.timeout.ms"
            | "heartbeat.interval.ms"
            | "max.poll.interval.ms"
            | "partition.assignment.strategy"
            | "group.instance.id"
            | "group.protocol"
            | "group.remote.assignor"
            | "fetch.min.bytes"
            | "fetch.max.bytes"
            | "fetch.wait.max.ms"
            | "fetch.message.max.bytes"
            | "max.partition.fetch.bytes"
            | "queued.min.messages"
            | "queued.max.messages.kbytes"
            | "isolation.level"
            | "check.crcs"
    )
}

fn is_producer_only(key: &str) -> bool {
    matches!(
        key,
        "enable.idempotence"
            | "acks"
            | "request.required.acks"
            | "max.in.flight.requests.per.connection"
            | "max.in.flight"
            | "retries"
            | "message.send.max.retries"
            | "retry.backoff.ms"
            | "retry.backoff.max.ms"
            | "partitioner"
            | "sticky.partitioning.linger.ms"
            | "batch.num.messages"
            | "compression.level"
            | "request.timeout.ms"
            | "enable.gapless.guarantee"
    )
}

/// Lets librdkafka check every passthrough option's name and value, offline (no connection).
/// The error names the key only: values may be secrets.
pub(crate) fn check_passthrough(cfg: &KafkaConfig) -> Result<(), ConfigError> {
    for role in [ClientRole::Producer, ClientRole::Consumer] {
        if let Err(e) = client_config(cfg, role)?.create_native_config() {
            return Err(config_error(&e));
        }
    }
    Ok(())
}

/// Maps a librdkafka configuration error to one naming the key, never the value.
pub(crate) fn config_error(e: &KafkaError) -> ConfigError {
    match e {
        KafkaError::ClientConfig(_, desc, key, _value) => {
            // librdkafka's description may quote the value ("Invalid value \"x\" for …").
            let reason = if desc.contains('"') {
                "librdkafka rejected this property or its value".to_owned()
            } else {
                format!("librdkafka: {desc}")
            };
            ConfigError {
                field: format!("kafka.librdkafka_options.\"{key}\""),
                reason,
            }
        }
        other => ConfigError {
            field: "kafka.librdkafka_options".into(),
            reason: format!("librdkafka: {}", describe(other)),
        },
    }
}

/// How a produce error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (broker down, leader moving, queue full, purged on shutdown): keep the event
    /// (spool) and try again later.
    Retryable,
    /// The broker will never accept this event (too large, invalid): drop it, counted.
    Rejected,
    /// The producer instance is unusable (idempotence state lost, authentication or
    /// authorisation failed): keep the event (spool), log an error, rebuild the producer.
    Fatal,
}

/// Classifies a produce error code.
pub fn classify(code: RDKafkaErrorCode) -> ErrorClass {
    use RDKafkaErrorCode as C;
    match code {
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::InvalidMessage
        | C::InvalidRecord
        | C::InvalidArgument
        | C::BadMessage
        | C::InvalidRequiredAcks
        | C::InvalidTopic
        | C::UnsupportedForMessageFormat
        | C::KeySerialization
        | C::ValueSerialization => ErrorClass::Rejected,
        C::Fatal
        | C::Fenced
        | C::InvalidProducerEpoch
        | C::ProducerFenced
        | C::OutOfOrderSequenceNumber
        | C::UnknownProducerId
        | C::InvalidProducerIdMapping
        | C::ClusterAuthorizationFailed
        | C::TopicAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::Authentication => ErrorClass::Fatal,
        _ => ErrorClass::Retryable,
    }
}

/// A short, payload-free description of a Kafka error for logs.
pub fn describe(e: &KafkaError) -> String {
    match e {
        // Never print configuration values (secrets).
        KafkaError::ClientConfig(_, desc, key, _) => format!("configuration {key}: {desc}"),
        other => match other.rdkafka_error_code() {
            Some(code) => format!("{other} ({code:?})"),
            None => other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_distinguishes_retryable_rejected_and_fatal() {
        use RDKafkaErrorCode as C;
        for c in [
            C::QueueFull,
            C::AllBrokersDown,
            C::MessageTimedOut,
            C::BrokerTransportFailure,
            C::NotLeaderForPartition,
            C::NotEnoughReplicas,
            C::RequestTimedOut,
            C::PurgeQueue,
            C::PurgeInflight,
            C::UnknownTopicOrPartition,
        ] {
            assert_eq!(classify(c), ErrorClass::Retryable, "{c:?}");
        }
        for c in [C::MessageSizeTooLarge, C::InvalidRecord, C::InvalidMessage] {
            assert_eq!(classify(c), ErrorClass::Rejected, "{c:?}");
        }
        for c in [
            C::Fatal,
            C::OutOfOrderSequenceNumber,
            C::TopicAuthorizationFailed,
            C::SaslAuthenticationFailed,
        ] {
            assert_eq!(classify(c), ErrorClass::Fatal, "{c:?}");
        }
    }

    #[test]
    fn enforced_settings_come_before_passthrough_and_are_role_specific() {
        let mut cfg = KafkaConfig::new(vec!["k1:9092".into(), "k2:9092".into()]);
        cfg.librdkafka_options.insert(
            "session.timeout.ms".into(),
            crate::config::OptionValue::Int(10_000),
        );
        let p = client_config(&cfg, ClientRole::Producer).unwrap();
        assert_eq!(p.get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("compression.type"), Some("lz4"));
        assert_eq!(p.get("session.timeout.ms"), None);
        let c = client_config(&cfg, ClientRole::Consumer).unwrap();
        assert_eq!(c.get("group.id"), Some("apitap-analyzer"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("session.timeout.ms"), Some("10000"));
        assert_eq!(c.get("acks"), None);
        assert!(c.create_native_config().is_ok());
        assert!(p.create_native_config().is_ok());
    }
}
