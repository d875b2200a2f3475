//! Topic creation with the Kafka admin API (CreateTopics), for setup tools, tests and the
//! demo. Production clusters usually create topics by their own process; this helper only
//! creates what is missing and never alters an existing topic.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::BusError;
use crate::config::KafkaConfig;
use crate::kafka::admin_config;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Number of partitions (the analyzer's scale-out limit, R-OPS-1).
    pub partitions: i32,
    /// Replication factor (use at least 3 in production).
    pub replication: i32,
}

/// What happened to one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicOutcome {
    /// Created now.
    Created,
    /// Existed already (left unchanged).
    Existed,
}

/// Creates each topic in `topics` that does not exist yet, waiting at most `timeout`.
pub fn ensure_topics(
    cfg: &KafkaConfig,
    topics: &[TopicSpec],
    timeout: Duration,
) -> Result<Vec<(String, TopicOutcome)>, BusError> {
    create(cfg, topics, false, timeout)
}

/// Creates `topic` with `cleanup.policy=compact` if it does not exist yet (the analyzer's
/// detection-state topic, issue 18: the latest record per key is kept forever, tombstones
/// delete). An existing topic is left as it is.
pub fn ensure_compacted_topic(
    cfg: &KafkaConfig,
    topic: &TopicSpec,
    timeout: Duration,
) -> Result<TopicOutcome, BusError> {
    let out = create(cfg, std::slice::from_ref(topic), true, timeout)?;
    Ok(out.first().map_or(TopicOutcome::Existed, |(_, o)| *o))
}

fn create(
    cfg: &KafkaConfig,
    topics: &[TopicSpec],
    compact: bool,
    timeout: Duration,
) -> Result<Vec<(String, TopicOutcome)>, BusError> {
    let admin: AdminClient<DefaultClientContext> = admin_config(cfg)?
        .create()
        .map_err(|e| BusError::kafka("creating the admin client", &e))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let n = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication),
            );
            if compact {
                n.set("cleanup.policy", "compact")
            } else {
                n
            }
        })
        .collect();
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = futures_executor::block_on(admin.create_topics(new.iter(), &opts))
        .map_err(|e| BusError::kafka("creating topics", &e))?;
    let mut out = Vec::new();
    for r in results {
        match r {
            Ok(name) => out.push((name, TopicOutcome::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                out.push((name, TopicOutcome::Existed))
            }
            Err((name, code)) => {
                return Err(BusError::Kafka {
                    context: "creating a topic",
                    detail: format!("{name}: {code:?}"),
                });
            }
        }
    }
    Ok(out)
}

/// The events and alerts topics of `cfg` with `partitions` partitions each.
pub fn product_topics(cfg: &KafkaConfig, partitions: i32, replication: i32) -> Vec<TopicSpec> {
    [&cfg.events_topic, &cfg.alerts_topic]
        .into_iter()
        .map(|name| TopicSpec {
            name: name.clone(),
            partitions,
            replication,
        })
        .collect()
}
