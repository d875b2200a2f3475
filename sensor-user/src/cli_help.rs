//! The man-style help of `apitap-sensor` (`--help`, and the man pages in `deploy/man/`).

use apitap_cli_doc::{EXIT_STATUS, KUBECONFIG, NODE_NAME, Page, RUST_LOG, SSL_CERT};

pub const ABOUT: &str = "\
apitap-sensor is apitap's capture agent. It runs on each application server, loads eBPF \
programs (XDP on ingress, TC on egress) on the configured interfaces, reassembles the TCP \
streams of the configured ports, decodes HTTP/1.x into API events (request, response, timing, \
minimised payload) and writes them to Kafka (spooling to disk while the brokers are slow or \
down) or to a JSON-lines file. It judges nothing: apitap-analyzer(1) builds the inventory and \
raises the alerts.

Each event names the cgroup, systemd unit, processes, container and Kubernetes pod that own \
the connection ([attribution]): a cgroup egress program on the cgroup v2 root records each \
socket's cgroup, and pods are named from a watch of the node's pods.

Loading and attaching needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (Linux >= 5.8 with BTF); \
once attached the sensor drops every capability before it reads any traffic. Metrics and \
/healthz are served on [metrics] listen.";

const ENVIRONMENT: &[(&str, &str)] = &[RUST_LOG, NODE_NAME, KUBECONFIG, SSL_CERT[0], SSL_CERT[1]];
const CONFIG: (&str, &str) = (
    "/etc/apitap/sensor.toml",
    "The configuration (TOML) by convention, given with --config; \
     deploy/config/sensor.example.toml documents every field.",
);
const SPOOL: (&str, &str) = (
    "/var/lib/apitap-sensor/spool",
    "The Kafka spool (kafka.spool.dir): events the brokers could not take yet, kept 0700.",
);
const BTF: (&str, &str) = (
    "/sys/kernel/btf/vmlinux",
    "Kernel BTF, for CO-RE relocation of the eBPF programs.",
);
const CGROUP: (&str, &str) = (
    "/sys/fs/cgroup",
    "The cgroup v2 hierarchy (attribution.cgroup_root): the cgroup egress program attaches to \
     its root, and cgroup paths name each connection's unit, container and pod.",
);
const HOSTNAME: (&str, &str) = (
    "/proc/sys/kernel/hostname",
    "The default sensor id (sensor.id) written into every event.",
);

pub const SENSOR: Page = Page {
    examples: &[
        (
            "apitap-sensor check-config --config /etc/apitap/sensor.toml",
            "Validate a configuration and print the effective settings.",
        ),
        (
            "apitap-sensor run --config /etc/apitap/sensor.toml",
            "Capture until SIGINT or SIGTERM (as root or with the three capabilities).",
        ),
        (
            "apitap-sensor replay capture.pcap > events.jsonl",
            "Decode a recorded capture into API events.",
        ),
    ],
    files: &[CONFIG, SPOOL, BTF, CGROUP, HOSTNAME],
    environment: ENVIRONMENT,
    exit_status: EXIT_STATUS,
    see_also: &[
        "apitap-sensor-run(1)",
        "apitap-sensor-replay(1)",
        "apitap-sensor-check-config(1)",
        "apitap-analyzer(1)",
        "apitap(1)",
        "deploy/README.md",
        "docs/event-schema.md",
    ],
};

pub const RUN_ABOUT: &str = "\
Load and attach the eBPF programs to the configured interfaces, capture the configured TCP \
ports and write API events to the configured sink ([sink]: Kafka or a file) until SIGINT or \
SIGTERM. On the signal, pending transactions are reported, the sink is flushed (Kafka \
deliveries finish or go to the spool) and the programs are detached. The command-line options \
replace the matching configuration fields.";

pub const RUN: Page = Page {
    examples: &[
        (
            "apitap-sensor run --config /etc/apitap/sensor.toml",
            "Capture as configured.",
        ),
        (
            "apitap-sensor run --config sensor.toml --interface eth0 --port 8080 --events-file /tmp/events.jsonl",
            "Capture port 8080 on eth0 into a JSON-lines file instead of the configured sink.",
        ),
        (
            "apitap-sensor run --config sensor.toml --metrics-listen 10.0.0.5:9464",
            "Serve /metrics and /healthz on the node's address (Kubernetes: $(HOST_IP):9464).",
        ),
    ],
    files: &[CONFIG, SPOOL, BTF, CGROUP, HOSTNAME],
    environment: ENVIRONMENT,
    exit_status: &[
        ("0", "Stopped by SIGINT or SIGTERM after a clean shutdown."),
        (
            "1",
            "The configuration is invalid, the programs could not be loaded or attached \
             (missing capability, no BTF, unknown interface), or the sink failed.",
        ),
        ("2", "Invalid command line."),
    ],
    see_also: &[
        "apitap-sensor(1)",
        "apitap-sensor-check-config(1)",
        "apitap-analyzer-run(1)",
        "deploy/README.md",
    ],
};

pub const REPLAY_ABOUT: &str = "\
Decode a pcap or pcapng capture file with the same reassembly and HTTP decoder as live \
capture and write the API events: JSON lines on standard output unless --events-file or the \
configuration's [sink] says otherwise. A summary (packets, connections, transactions, what \
was dropped) goes to standard error. Needs no privileges.";

pub const REPLAY: Page = Page {
    examples: &[
        (
            "apitap-sensor replay capture.pcap > events.jsonl",
            "Decode with the default limits and payload mode.",
        ),
        (
            "apitap-sensor replay capture.pcapng --config sensor.toml --sensor-id lab-1 --events-file events.jsonl",
            "Decode with a configuration's limits and [payload] minimisation.",
        ),
        (
            "apitap-sensor replay capture.pcap | apitap-analyzer process --input -",
            "Decode and summarise per endpoint.",
        ),
    ],
    files: &[CONFIG],
    environment: ENVIRONMENT,
    exit_status: EXIT_STATUS,
    see_also: &[
        "apitap-sensor(1)",
        "apitap-analyzer-process(1)",
        "docs/event-schema.md",
    ],
};

pub const CHECK_CONFIG_ABOUT: &str = "\
Load and validate a configuration file as run would (every section, limit and Kafka setting) \
without loading any eBPF program, and print the \
effective settings. Errors name the offending field, never a secret value.";

pub const CHECK_CONFIG: Page = Page {
    examples: &[(
        "apitap-sensor check-config --config /etc/apitap/sensor.toml",
        "Check the file before restarting the service.",
    )],
    files: &[CONFIG],
    environment: &[RUST_LOG],
    exit_status: &[
        (
            "0",
            "The configuration is valid; the settings are on standard output.",
        ),
        (
            "1",
            "The file is unreadable or invalid; the field is named on standard error.",
        ),
        ("2", "Invalid command line."),
    ],
    see_also: &["apitap-sensor(1)", "apitap-sensor-run(1)"],
};

/// Every page by command path, for the man pages.
pub const PAGES: &[(&str, &Page)] = &[
    ("apitap-sensor", &SENSOR),
    ("apitap-sensor run", &RUN),
    ("apitap-sensor replay", &REPLAY),
    ("apitap-sensor check-config", &CHECK_CONFIG),
];
