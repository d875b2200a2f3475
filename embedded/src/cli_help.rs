//! The man-style help of `apitap` (`--help`, and the man pages in `deploy/man/`).

use apitap_cli_doc::{EXIT_STATUS, KUBECONFIG, NODE_NAME, Page, RUST_LOG, SSL_CERT};

pub const ABOUT: &str = "\
apitap is the single-process mode of apitap: apitap-sensor(1)'s live capture and \
apitap-analyzer(1)'s analysis in one process, joined by a bounded in-memory channel instead \
of Kafka. It suits one host, a lab or a demo; for a fleet run the two programs with a broker. \
It needs the sensor's privileges (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON), which it drops once \
the programs are attached.";

const FILES: &[(&str, &str)] = &[
    (
        "/etc/apitap/sensor.toml",
        "The sensor configuration by convention (deploy/config/sensor.example.toml), without \
         [sink] and [kafka].",
    ),
    (
        "/etc/apitap/analyzer.toml",
        "The analyzer configuration by convention (deploy/config/analyzer.example.toml), \
         without [input] and [kafka].",
    ),
    (
        "/sys/kernel/btf/vmlinux",
        "Kernel BTF, for CO-RE relocation of the eBPF programs.",
    ),
];
const ENVIRONMENT: &[(&str, &str)] = &[RUST_LOG, NODE_NAME, KUBECONFIG, SSL_CERT[0], SSL_CERT[1]];
const EXAMPLE: (&str, &str) = (
    "apitap run --sensor-config /etc/apitap/sensor.toml --analyzer-config /etc/apitap/analyzer.toml",
    "Capture and analyse until SIGINT or SIGTERM, then write the final summary.",
);

pub const APITAP: Page = Page {
    examples: &[
        EXAMPLE,
        (
            "RUST_LOG=debug apitap --log-format json run --sensor-config sensor.toml --analyzer-config analyzer.toml",
            "The same with debug logs as JSON lines on standard error.",
        ),
    ],
    files: FILES,
    environment: ENVIRONMENT,
    exit_status: EXIT_STATUS,
    see_also: &[
        "apitap-run(1)",
        "apitap-sensor(1)",
        "apitap-analyzer(1)",
        "deploy/README.md",
    ],
};

pub const RUN_ABOUT: &str = "\
Attach the capture as apitap-sensor run does and analyse its events as apitap-analyzer run \
does, in one process, until SIGINT or SIGTERM; then the sensor reports its pending \
transactions, the channel drains and the final summary is written. When the analyzer falls \
behind by --channel-events events, new events are dropped and counted rather than blocking \
capture.";

pub const RUN: Page = Page {
    examples: &[
        EXAMPLE,
        (
            "apitap run --sensor-config sensor.toml --analyzer-config analyzer.toml --channel-events 20000",
            "A smaller in-memory queue (less memory, drops sooner under load).",
        ),
    ],
    files: FILES,
    environment: ENVIRONMENT,
    exit_status: &[
        (
            "0",
            "Stopped by SIGINT or SIGTERM after the final summary was written.",
        ),
        (
            "1",
            "A configuration is invalid, the programs could not be attached, or a failure \
             while running.",
        ),
        ("2", "Invalid command line."),
    ],
    see_also: &[
        "apitap(1)",
        "apitap-sensor-run(1)",
        "apitap-analyzer-run(1)",
    ],
};

/// Every page by command path, for the man pages.
pub const PAGES: &[(&str, &Page)] = &[("apitap", &APITAP), ("apitap run", &RUN)];
