//! Ring-buffer wake-up batching on the real kernel (R-CAP-1, R-CAP-7): below
//! `capture.wakeup_bytes` the kernel program writes records without waking the agent, which
//! drains the ring on its `poll_interval_ms` timer; the record that makes the unread data
//! cross the threshold wakes it; `wakeup_bytes = 0` restores the kernel's wake-per-record
//! policy. Every event arrives under each policy.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use apitap_tests::{Nginx, SERVER_PORT, Sensor, Topology, metric, read_events, require_privileges};

const WAKEUPS: &str = "apitap_sensor_ring_wakeups_total";
const TIMER_DRAINS: &str = "apitap_sensor_ring_timer_drains_total";
const EVENTS: &str = "apitap_sensor_events_total";

#[test]
fn wakeups_are_batched_by_the_kernel_and_nothing_waits_forever() -> anyhow::Result<()> {
    if !require_privileges("wakeups_are_batched_by_the_kernel_and_nothing_waits_forever") {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("apitap-test-wakeup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let topo = Topology::new("wake")?;
    let _nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;

    // A sensor with these `[capture]` settings, and its metrics after a second of idling.
    let start = |capture: &str, name: &str| -> anyhow::Result<(Sensor, Vec<(String, u64)>)> {
        let sensor = Sensor::start_with(
            &topo.server,
            &topo.server_if,
            &[SERVER_PORT],
            capture,
            &dir.join(name),
        )?;
        std::thread::sleep(Duration::from_millis(1200));
        let idle = sensor.metrics()?;
        Ok((sensor, idle))
    };

    // Batching: 64 KiB threshold, a slow (1 s) timer so that the two paths cannot be confused.
    let (mut sensor, idle) = start("wakeup_bytes = 65536\npoll_interval_ms = 1000", "batched")?;

    // One small transaction: far below the threshold, so only the timer can deliver it.
    topo.curl(&["-o", "/dev/null", &topo.url("/api/v1/users/1?wake=small")])?;
    let small = sensor.wait_for_metric(EVENTS, 1, Duration::from_secs(15))?;
    assert!(
        metric(&small, TIMER_DRAINS) > metric(&idle, TIMER_DRAINS),
        "the timer delivered the small transaction: {small:?}"
    );
    assert_eq!(
        metric(&small, WAKEUPS),
        metric(&idle, WAKEUPS),
        "the kernel must not wake the agent below wakeup_bytes"
    );

    // Ten 20 KB responses on one connection: about 200 KB, crossing 64 KiB long before the
    // next timer drain, so the kernel wakes the agent.
    let mut args = Vec::new();
    for i in 0..10 {
        args.push(topo.url(&format!("/api/v1/report?wake=big{i}")));
        args.push("-o".to_owned());
        args.push("/dev/null".to_owned());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    topo.curl(&argv)?;
    let big = sensor.wait_for_metric(EVENTS, 11, Duration::from_secs(15))?;
    assert!(
        metric(&big, WAKEUPS) > metric(&small, WAKEUPS),
        "crossing wakeup_bytes must wake the agent: {big:?}"
    );
    sensor.stop()?;
    let events = read_events(&sensor.events)?;
    assert_eq!(events.len(), 11);
    for e in &events {
        let r = e.response.as_ref().expect("paired");
        assert_eq!(r.status, 200);
        assert!(e.anomalies.is_empty(), "{:?}", e.anomalies);
    }
    drop(sensor);

    // wakeup_bytes = 0: the kernel's own policy wakes the agent for a single small record.
    let (mut sensor, idle) = start("wakeup_bytes = 0\npoll_interval_ms = 1000", "per-record")?;
    topo.curl(&["-o", "/dev/null", &topo.url("/api/v1/users/2?wake=each")])?;
    let after = sensor.wait_for_metric(EVENTS, 1, Duration::from_secs(15))?;
    assert!(
        metric(&after, WAKEUPS) > metric(&idle, WAKEUPS),
        "wakeup_bytes = 0 wakes the agent per record: {after:?}"
    );
    sensor.stop()?;
    assert_eq!(read_events(&sensor.events)?.len(), 1);
    Ok(())
}
