//! apitap's embedded single-process mode (R-BUS-1: "embedded default"): the sensor and the
//! analyzer in one process, joined by the in-memory bus (`apitap_bus::memory`), so a laptop or
//! the demo needs no Kafka broker.
//!
//! This crate owns only the joining: everything before the bus boundary is the sensor's code
//! (`apitap_sensor::live::run_attached`), everything after it the analyzer's
//! (`apitap_analyzer::app::run_with_source`), exactly as in the two-process deployment with
//! Kafka in between. The channel carries encoded events, so the analyzer's consumer checks
//! run as with Kafka; when the analyzer falls `channel_events` behind, new events are dropped
//! and counted (`apitap_bus_events_dropped_total{cause="memory_full"}`), never blocking
//! capture.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use apitap_analyzer::app::{BusSource, run_with_source};
use apitap_analyzer::ingest::RunStats;
use apitap_bus::BusMetrics;
use apitap_bus::config::ConsumerConfig;
use apitap_sensor::config::{Config as SensorConfig, SinkKind};
use apitap_sensor::sink::Sink;

/// Runs the sensor (live capture) and the analyzer until SIGINT/SIGTERM stops the sensor and
/// the analyzer has consumed everything it published.
pub fn run(
    sensor: SensorConfig,
    analyzer: apitap_analyzer::Config,
    channel_events: usize,
) -> anyhow::Result<RunStats> {
    check(&sensor, &analyzer)?;
    // Attach and give up capabilities while this is the process's only thread: the analyzer
    // and the sensor thread start without any (R-OPS-3).
    let attached = apitap_sensor::live::attach(&sensor)?;
    let metrics = Arc::new(BusMetrics::default());
    let consumer = ConsumerConfig {
        max_unacked_events: channel_events.max(2),
        ..ConsumerConfig::default()
    };
    let (publisher, source) =
        apitap_bus::memory::channel(channel_events, &consumer, metrics.clone());
    let sensor_thread = std::thread::Builder::new()
        .name("apitap-sensor".into())
        .spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building the sensor's async runtime")?;
            // The sink (and with it the channel) closes when capture stops, which ends the
            // analyzer once it has read everything.
            runtime.block_on(apitap_sensor::live::run_attached(
                sensor,
                attached,
                Sink::from_publisher(Box::new(publisher)),
            ))
        })
        .context("starting the sensor thread")?;
    let bus = BusSource {
        source: Box::new(source),
        alerts: None,
        metrics,
        stop_on_signal: false,
        max_pending_events: (channel_events / 2).max(1),
        kafka: None,
    };
    let analyzed = run_with_source(&analyzer, bus).context("analyzer");
    let captured = match sensor_thread.join() {
        Ok(result) => result.context("sensor"),
        Err(_) => Err(anyhow::anyhow!("the sensor thread panicked")),
    };
    captured?;
    analyzed
}

/// The embedded mode reads no file and talks to no broker: settings for those are mistakes.
fn check(sensor: &SensorConfig, analyzer: &apitap_analyzer::Config) -> anyhow::Result<()> {
    if sensor.sink.kind != SinkKind::Stdout || sensor.sink.path.is_some() {
        bail!(
            "invalid sensor config: field `sink`: the embedded mode hands events to the analyzer \
             in memory; remove the [sink] table (or run apitap-sensor and apitap-analyzer \
             separately)"
        );
    }
    if sensor.kafka.is_some() {
        bail!(
            "invalid sensor config: field `kafka`: the embedded mode uses no broker; remove \
             [kafka] (or run apitap-sensor and apitap-analyzer separately)"
        );
    }
    if analyzer.input.is_some() {
        bail!(
            "invalid analyzer config: field `input`: the embedded mode reads events from the \
             sensor in memory; remove [input]"
        );
    }
    if analyzer.kafka.is_some() {
        bail!(
            "invalid analyzer config: field `kafka`: the embedded mode uses no broker; remove \
             [kafka]"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor(text: &str) -> SensorConfig {
        SensorConfig::parse(text).unwrap()
    }

    #[test]
    fn rejects_sources_and_sinks_it_does_not_use_by_field() {
        let ok_sensor = sensor("[capture]\ninterfaces = [\"eth0\"]\n");
        let ok_analyzer = apitap_analyzer::Config::parse("").unwrap();
        check(&ok_sensor, &ok_analyzer).unwrap();

        let kafka_sink = sensor(
            "[capture]\ninterfaces = [\"e\"]\n[sink]\nkind = \"kafka\"\n[kafka]\nbrokers = [\"k:1\"]\n",
        );
        let err = check(&kafka_sink, &ok_analyzer).unwrap_err().to_string();
        assert!(err.contains("`sink`"), "{err}");
        let file_sink =
            sensor("[capture]\ninterfaces = [\"e\"]\n[sink]\nkind = \"file\"\npath = \"/x\"\n");
        assert!(
            check(&file_sink, &ok_analyzer)
                .unwrap_err()
                .to_string()
                .contains("`sink`")
        );

        let with_input = apitap_analyzer::Config::parse("[input]\npath = \"-\"\n").unwrap();
        let err = check(&ok_sensor, &with_input).unwrap_err().to_string();
        assert!(err.contains("`input`"), "{err}");
        let with_kafka = apitap_analyzer::Config::parse("[kafka]\nbrokers = [\"k:1\"]\n").unwrap();
        let err = check(&ok_sensor, &with_kafka).unwrap_err().to_string();
        assert!(err.contains("`kafka`"), "{err}");
    }
}
