//! Drop accounting and port filtering on the real kernel (R-CAP-7): a snap length shorter than
//! the packets makes the kernel count truncations and the decoder turn the missing tails into
//! gaps on the affected events — never silently wrong bodies; and with no ports configured
//! every TCP port is captured.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use apitap_schema::Anomaly;
use apitap_tests::{Nginx, Sensor, Topology, metric, read_events, require_privileges};

#[test]
fn truncation_is_counted_and_surfaces_as_gaps_in_all_ports_mode() -> anyhow::Result<()> {
    if !require_privileges("truncation_is_counted_and_surfaces_as_gaps_in_all_ports_mode") {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("apitap-test-counters-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let topo = Topology::new("cnt")?;
    let _nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    // No ports: capture everything. Snap 300 bytes: the 20 KB report cannot fit.
    let mut sensor = Sensor::start_with(
        &topo.server,
        &topo.server_if,
        &[],
        "snap_len_bytes = 300",
        &dir.join("sensor"),
    )?;
    topo.curl(&["-o", "/dev/null", &topo.url("/api/v1/users/1?small=1")])?;
    topo.curl(&["-o", "/dev/null", &topo.url("/api/v1/report?big=1")])?;
    let m = sensor.wait_for_metric("apitap_sensor_events_total", 2, Duration::from_secs(15))?;
    sensor.stop()?;
    let events = read_events(&sensor.events)?;

    assert!(
        metric(
            &m,
            "apitap_kernel_dropped_packets_total{cause=\"truncated\"}"
        ) > 0,
        "{m:?}"
    );
    assert!(metric(&m, "apitap_decode_stream_gaps_total") > 0, "{m:?}");
    let small = events
        .iter()
        .find(|e| e.request.query.as_deref() == Some("small=1"))
        .expect("small");
    assert!(small.anomalies.is_empty(), "{:?}", small.anomalies);
    assert_eq!(small.response.as_ref().map(|r| r.status), Some(200));
    let big = events
        .iter()
        .find(|e| e.request.query.as_deref() == Some("big=1"))
        .expect("big");
    let r = big
        .response
        .as_ref()
        .expect("response head fits in the snap length");
    assert_eq!(r.status, 200);
    assert!(
        big.anomalies.contains(&Anomaly::ResponseGap),
        "{:?}",
        big.anomalies
    );
    assert!(r.body.truncated && r.body.captured_bytes < r.body.length_bytes);
    assert_eq!(
        r.body.length_bytes, 20_000,
        "length from Content-Length, not from what was captured"
    );
    Ok(())
}
