//! apitap's capture agent (`apitap-sensor`).
//!
//! This crate owns the host side of capture: loading and attaching the eBPF programs built
//! from `sensor-ebpf` (XDP ingress, TC egress), reading their ring buffer and drop counters,
//! turning ring records into TCP segments for the decoder (`apitap-decode`), and writing the
//! resulting API events to a sink, minimised per the `[payload]` section (R-CAP-8), attributed
//! to the cgroup, unit, container and Kubernetes pod that own each connection (R-CAP-5). It also owns the sensor's configuration file, metrics and
//! health endpoint. It makes no judgement about the traffic: the analyzer does (R-CAP-1,
//! R-CAP-2, R-CAP-7, R-OPS-2).

pub mod attribution;
pub mod capture;
pub mod clock;
pub mod config;
pub mod live;
pub mod metrics;
pub mod minimise;
pub mod privilege;
pub mod record;
pub mod replay;
pub mod sampling;
pub mod sink;
pub mod tls;
