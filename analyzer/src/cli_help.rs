//! The man-style help of the `apitap-analyzer` binary (`--help`, and the man pages in
//! `deploy/man/`); a module of `main.rs`, not of the library.

use apitap_cli_doc::{EXIT_STATUS, Page, RUST_LOG, SSL_CERT};

pub const ABOUT: &str = "\
apitap-analyzer reads the API events apitap-sensor(1) writes, from a JSON-lines file or a Kafka \
consumer group, and turns them into a per-endpoint traffic summary, the API inventory \
(templated endpoints, request and response shapes, sensitive-data labels, lifecycle, spec \
conformance; SQLite or PostgreSQL) and alerts: inventory changes, sensitive-data weak points \
and threat detections as OCSF findings, to a file or the Kafka alert topic. It serves \
Prometheus metrics and a read-only inventory HTTP API, and needs no privileges.";

const ENVIRONMENT: &[(&str, &str)] = &[RUST_LOG, SSL_CERT[0], SSL_CERT[1]];
const CONFIG: (&str, &str) = (
    "/etc/apitap/analyzer.toml",
    "The configuration (TOML) by convention, given with --config; \
     deploy/config/analyzer.example.toml documents every field.",
);
const STATE: (&str, &str) = (
    "/var/lib/apitap-analyzer",
    "State directory of the example configuration and the systemd unit (mode 0700): the \
     SQLite inventory store, alerts, summary and dead-letter files (/var/lib/apitap in the \
     Kubernetes manifest).",
);
const SECRETS: (&str, &str) = (
    "/run/secrets/apitap",
    "Credential files in Kubernetes (hash key, Kafka and PostgreSQL passwords, tokens): each \
     must be its owner's only, mode 0600 or stricter, or root's and group-read only.",
);

pub const ANALYZER: Page = Page {
    examples: &[
        (
            "apitap-analyzer check-config --config /etc/apitap/analyzer.toml",
            "Check a configuration and print what run would use.",
        ),
        (
            "apitap-analyzer run --config /etc/apitap/analyzer.toml",
            "Run the service: Kafka until SIGTERM, or a file to its end.",
        ),
        (
            "apitap-analyzer process --input events.jsonl --store inventory.db",
            "Summarise a file of events and update an inventory.",
        ),
        (
            "apitap-analyzer inventory list --store inventory.db --min-sensitivity high",
            "List the endpoints that carry highly sensitive data.",
        ),
    ],
    files: &[CONFIG, STATE, SECRETS],
    environment: ENVIRONMENT,
    exit_status: EXIT_STATUS,
    see_also: &[
        "apitap-analyzer-run(1)",
        "apitap-analyzer-process(1)",
        "apitap-analyzer-check-config(1)",
        "apitap-analyzer-inventory(1)",
        "apitap-sensor(1)",
        "apitap(1)",
        "deploy/README.md",
        "docs/inventory.md",
        "docs/detections.md",
    ],
};

pub const PROCESS_ABOUT: &str = "\
Read a JSON-lines events file (or standard input) to its end and write the per-endpoint \
summary. With --store, update the API inventory in that store; with --alerts, write the \
inventory changes and findings as alerts. A configuration given with --config contributes \
its [inventory] and [labels] tables; its [input] is ignored. Lines that are not valid events \
are counted and skipped, never echoed.";

pub const PROCESS: Page = Page {
    examples: &[
        (
            "apitap-analyzer process --input events.jsonl",
            "Print the summary as a table.",
        ),
        (
            "apitap-sensor replay capture.pcap | apitap-analyzer process --input - --format json",
            "Summarise a recorded capture as JSON.",
        ),
        (
            "apitap-analyzer process --input events.jsonl --store sqlite:inventory.db --alerts alerts.jsonl --config analyzer.toml",
            "Update an inventory with the configuration's specs and hash key, writing alerts.",
        ),
    ],
    files: &[CONFIG],
    environment: ENVIRONMENT,
    exit_status: EXIT_STATUS,
    see_also: &[
        "apitap-analyzer(1)",
        "apitap-analyzer-inventory(1)",
        "apitap-sensor-replay(1)",
    ],
};

pub const CHECK_CONFIG_ABOUT: &str = "\
Check a configuration as run would (every value, the hash key, token and Kafka secret files, \
the specs and overrides) without starting anything, and print what it would run with. \
Errors name the offending field, never a secret value.";

pub const CHECK_CONFIG: Page = Page {
    examples: &[(
        "apitap-analyzer check-config --config /etc/apitap/analyzer.toml",
        "Check the file before restarting the service.",
    )],
    files: &[CONFIG, SECRETS],
    environment: &[RUST_LOG],
    exit_status: &[
        (
            "0",
            "The configuration is valid; the settings are on standard output.",
        ),
        (
            "1",
            "It is not; the field and the reason are on standard error.",
        ),
        ("2", "Invalid command line."),
    ],
    see_also: &["apitap-analyzer(1)", "apitap-analyzer-run(1)"],
};

pub const RUN_ABOUT: &str = "\
Run the analyzer service with a TOML configuration: events from [input] (a JSON-lines file, \
to its end) or [kafka] (a consumer group, until SIGINT or SIGTERM); the summary every \
output.summary_interval_secs, the inventory store, alerts to a file and/or the alert topic, \
metrics and the inventory API. On SIGTERM it makes its work durable, commits its offsets and \
leaves the group.";

pub const RUN: Page = Page {
    examples: &[(
        "apitap-analyzer run --config /etc/apitap/analyzer.toml",
        "Run as configured (the systemd unit and the Kubernetes Deployment do this).",
    )],
    files: &[CONFIG, STATE, SECRETS],
    environment: ENVIRONMENT,
    exit_status: &[
        (
            "0",
            "The input ended, or SIGINT/SIGTERM stopped it after the work was made durable.",
        ),
        (
            "1",
            "The configuration is invalid, the store or the brokers cannot be used, or a \
             failure while running.",
        ),
        ("2", "Invalid command line."),
    ],
    see_also: &[
        "apitap-analyzer(1)",
        "apitap-analyzer-check-config(1)",
        "apitap-sensor-run(1)",
        "deploy/README.md",
    ],
};

pub const INVENTORY_ABOUT: &str = "\
Query the API inventory in a store: list endpoints with filters, show one with its change \
log, export summaries or OpenAPI 3.1 documents, or print the change log. The store is given \
with --store: sqlite:PATH, a file path, or postgres://... (then --store-password-file and \
--store-ca-file as inventory.store_password_file and inventory.store_ca_file).";

const INVENTORY_EXAMPLES: &[(&str, &str)] = &[
    (
        "apitap-analyzer inventory list --store inventory.db --service shop --label email",
        "Endpoints of one service that carry e-mail addresses.",
    ),
    (
        "apitap-analyzer inventory export --store inventory.db --format openapi --out-dir specs",
        "One OpenAPI document per service into specs/.",
    ),
    (
        "apitap-analyzer inventory changes --store postgres://apitap@db/apitap --store-password-file /run/secrets/apitap/pg-password --after-seq 1200",
        "Changes since sequence number 1200, from PostgreSQL over TLS.",
    ),
];

pub const INVENTORY: Page = Page {
    examples: INVENTORY_EXAMPLES,
    files: &[SECRETS],
    environment: ENVIRONMENT,
    exit_status: EXIT_STATUS,
    see_also: &[
        "apitap-analyzer-inventory-list(1)",
        "apitap-analyzer-inventory-show(1)",
        "apitap-analyzer-inventory-export(1)",
        "apitap-analyzer-inventory-changes(1)",
        "docs/inventory.md",
    ],
};

pub const LIST: Page = Page {
    examples: &[
        (
            "apitap-analyzer inventory list --store inventory.db",
            "Every endpoint as a table.",
        ),
        (
            "apitap-analyzer inventory list --store inventory.db --spec-status undocumented --format json",
            "Endpoints missing from the specs, as JSON.",
        ),
    ],
    files: &[],
    environment: ENVIRONMENT,
    exit_status: EXIT_STATUS,
    see_also: &[
        "apitap-analyzer-inventory(1)",
        "apitap-analyzer-inventory-show(1)",
    ],
};

pub const SHOW: Page = Page {
    examples: &[
        (
            "apitap-analyzer inventory show --store inventory.db ENDPOINT_ID",
            "One endpoint by id (from list --format json): summary, record, change log.",
        ),
        (
            "apitap-analyzer inventory show --store inventory.db --service shop --method GET --template '/customers/{id}' --format table",
            "One endpoint by its key, with its field-level data map.",
        ),
    ],
    files: &[],
    environment: ENVIRONMENT,
    exit_status: EXIT_STATUS,
    see_also: &[
        "apitap-analyzer-inventory(1)",
        "apitap-analyzer-inventory-list(1)",
    ],
};

pub const EXPORT: Page = Page {
    examples: &[
        (
            "apitap-analyzer inventory export --store inventory.db > endpoints.json",
            "Every endpoint summary as a JSON array.",
        ),
        (
            "apitap-analyzer inventory export --store inventory.db --format openapi --service shop",
            "The OpenAPI 3.1 document of one service on standard output.",
        ),
    ],
    files: &[],
    environment: ENVIRONMENT,
    exit_status: EXIT_STATUS,
    see_also: &["apitap-analyzer-inventory(1)", "docs/inventory.md"],
};

pub const CHANGES: Page = Page {
    examples: &[(
        "apitap-analyzer inventory changes --store inventory.db --limit 50",
        "The first 50 changes as JSON lines.",
    )],
    files: &[],
    environment: ENVIRONMENT,
    exit_status: EXIT_STATUS,
    see_also: &["apitap-analyzer-inventory(1)", "docs/inventory.md"],
};

/// Every page by command path, for the man pages.
pub const TRACE_ABOUT: &str = "\
Trace-back (R-THR-6): list the API calls that carried a sensitive value, came from a client \
address, an account or a User-Agent, or hit an endpoint, oldest first, from the store of the \
configuration's [trace] table. A value typed with --value, --account or --ua is hashed here \
with the site key (labels.hash_key_file) and never leaves this process; the store holds only \
keyed hashes. Ask exactly one question, optionally within --since and --until.";

pub const TRACE: Page = Page {
    examples: &[
        (
            "apitap-analyzer trace --config /etc/apitap/analyzer.toml --value '110101199003077777'",
            "Which calls served (or received) this PRC ID number.",
        ),
        (
            "apitap-analyzer trace --config /etc/apitap/analyzer.toml --ip 203.0.113.7 --since 2026-12-01",
            "Everything one address called since a day.",
        ),
        (
            "apitap-analyzer trace --config /etc/apitap/analyzer.toml --account login_user:00000000000000ab --format json",
            "The calls of an account named in an alert, as JSON.",
        ),
    ],
    files: &[CONFIG, STATE],
    environment: &[RUST_LOG],
    exit_status: EXIT_STATUS,
    see_also: &[
        "apitap-analyzer(1)",
        "apitap-analyzer-run(1)",
        "docs/trace-back.md",
    ],
};

pub const PAGES: &[(&str, &Page)] = &[
    ("apitap-analyzer", &ANALYZER),
    ("apitap-analyzer process", &PROCESS),
    ("apitap-analyzer check-config", &CHECK_CONFIG),
    ("apitap-analyzer run", &RUN),
    ("apitap-analyzer inventory", &INVENTORY),
    ("apitap-analyzer inventory list", &LIST),
    ("apitap-analyzer inventory show", &SHOW),
    ("apitap-analyzer inventory export", &EXPORT),
    ("apitap-analyzer inventory changes", &CHANGES),
    ("apitap-analyzer trace", &TRACE),
];
