//! Findings: what the engine reports at each campaign transition ([`Activity`]), with the
//! detector, actor keys, endpoint, counters, time range and masked sample requests, and the
//! OWASP API Top 10 2023 / OWASP OAT / MITRE ATT&CK mapping of each detector.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Lifecycle transition of a campaign (OCSF `activity_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// First report of a campaign.
    Create = 1,
    /// New counters / time range.
    Update = 2,
    /// Quiet for `lifecycle.quiet_secs`: closed.
    Close = 3,
}

impl Activity {
    /// OCSF activity name.
    pub fn name(self) -> &'static str {
        match self {
            Activity::Create => "Create",
            Activity::Update => "Update",
            Activity::Close => "Close",
        }
    }
}

/// Severity of every apitap alert (OCSF `severity_id` 1–5): detections are Low to Critical,
/// weak points Low to High, inventory changes Informational to Medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Informational = 1,
    /// Low.
    Low = 2,
    /// Medium.
    Medium = 3,
    /// High.
    High = 4,
    /// Critical.
    Critical = 5,
}

impl Severity {
    /// OCSF caption.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }
}

impl From<crate::weak::Severity> for Severity {
    /// A weak point's severity.
    fn from(s: crate::weak::Severity) -> Severity {
        match s {
            crate::weak::Severity::Low => Severity::Low,
            crate::weak::Severity::Medium => Severity::Medium,
            crate::weak::Severity::High => Severity::High,
        }
    }
}

/// The detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// Crawling / scraping (OAT-011).
    Crawling,
    /// Enumeration / traversal (API1 BOLA).
    Enumeration,
    /// Credential stuffing (OAT-008).
    CredentialStuffing,
    /// Brute force / credential cracking (OAT-007), possible account takeover.
    BruteForce,
    /// OTP / SMS-code guessing (OAT-002).
    OtpGuessing,
    /// Abnormal data access (bulk records, off-hours, sharing, foreign access).
    AbnormalAccess,
}

/// One MITRE ATT&CK technique (ATT&CK v15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Attack {
    /// Technique id (`T1110`).
    pub technique: &'static str,
    /// Technique name.
    pub technique_name: &'static str,
    /// Sub-technique id (`T1110.004`), if any.
    pub sub_technique: Option<(&'static str, &'static str)>,
    /// Tactic id (`TA0006`).
    pub tactic: &'static str,
    /// Tactic name.
    pub tactic_name: &'static str,
}

const T1110_CA: (&str, &str, &str, &str) = ("T1110", "Brute Force", "TA0006", "Credential Access");

const fn att(
    base: (&'static str, &'static str, &'static str, &'static str),
    sub: Option<(&'static str, &'static str)>,
) -> Attack {
    Attack {
        technique: base.0,
        technique_name: base.1,
        sub_technique: sub,
        tactic: base.2,
        tactic_name: base.3,
    }
}

const ACTIVE_SCANNING: (&str, &str, &str, &str) =
    ("T1595", "Active Scanning", "TA0043", "Reconnaissance");
const VALID_ACCOUNTS: (&str, &str, &str, &str) =
    ("T1078", "Valid Accounts", "TA0001", "Initial Access");
const DATA_REPO: (&str, &str, &str, &str) = (
    "T1213",
    "Data from Information Repositories",
    "TA0009",
    "Collection",
);
const AUTO_COLLECTION: (&str, &str, &str, &str) =
    ("T1119", "Automated Collection", "TA0009", "Collection");

impl Detector {
    /// Every detector.
    pub const ALL: [Detector; 6] = [
        Detector::Crawling,
        Detector::Enumeration,
        Detector::CredentialStuffing,
        Detector::BruteForce,
        Detector::OtpGuessing,
        Detector::AbnormalAccess,
    ];

    /// snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Crawling => "crawling",
            Detector::Enumeration => "enumeration",
            Detector::CredentialStuffing => "credential_stuffing",
            Detector::BruteForce => "brute_force",
            Detector::OtpGuessing => "otp_guessing",
            Detector::AbnormalAccess => "abnormal_access",
        }
    }

    /// OWASP API Security Top 10 2023 categories of a finding of this detector and kind.
    pub fn owasp_api(self, kind: &str) -> &'static [&'static str] {
        match (self, kind) {
            (Detector::Crawling, _) => &["API6:2023", "API4:2023"],
            (Detector::Enumeration, _) => &["API1:2023"],
            (Detector::CredentialStuffing | Detector::BruteForce | Detector::OtpGuessing, _) => {
                &["API2:2023", "API4:2023"]
            }
            (Detector::AbnormalAccess, "account_sharing" | "off_hours_access") => &["API2:2023"],
            (Detector::AbnormalAccess, "foreign_access_internal_api") => &["API9:2023"],
            (Detector::AbnormalAccess, _) => &["API3:2023", "API6:2023"],
        }
    }

    /// OWASP Automated Threats (OAT) of this detector.
    pub fn oat(self) -> &'static [&'static str] {
        match self {
            Detector::Crawling => &["OAT-011 Scraping"],
            Detector::Enumeration => &["OAT-011 Scraping"],
            Detector::CredentialStuffing => &["OAT-008 Credential Stuffing"],
            Detector::BruteForce => &["OAT-007 Credential Cracking"],
            Detector::OtpGuessing => &["OAT-002 Token Cracking"],
            Detector::AbnormalAccess => &[],
        }
    }

    /// MITRE ATT&CK techniques of a finding of this detector and kind.
    pub fn attacks(self, kind: &str) -> Vec<Attack> {
        match (self, kind) {
            (Detector::Crawling, _) => vec![att(ACTIVE_SCANNING, None), att(AUTO_COLLECTION, None)],
            (Detector::Enumeration, _) => vec![
                att(ACTIVE_SCANNING, Some(("T1595.003", "Wordlist Scanning"))),
                att(DATA_REPO, None),
            ],
            (Detector::CredentialStuffing, _) => {
                vec![att(T1110_CA, Some(("T1110.004", "Credential Stuffing")))]
            }
            (Detector::BruteForce, "possible_account_takeover") => vec![
                att(T1110_CA, Some(("T1110.001", "Password Guessing"))),
                att(VALID_ACCOUNTS, None),
            ],
            (Detector::BruteForce, _) => {
                vec![att(T1110_CA, Some(("T1110.001", "Password Guessing")))]
            }
            (Detector::OtpGuessing, _) => vec![att(T1110_CA, None)],
            (
                Detector::AbnormalAccess,
                "account_sharing" | "off_hours_access" | "foreign_access_internal_api",
            ) => {
                vec![att(VALID_ACCOUNTS, None)]
            }
            (Detector::AbnormalAccess, _) => vec![att(DATA_REPO, None)],
        }
    }
}

/// One actor key in evidence: kind (`client_ip`, `subnet`, `account`, `login_user`,
/// `user_agent_family`, `fingerprint`, `scope`) and value (addresses in clear; accounts and user
/// names as keyed hashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActorKey {
    /// Kind of key.
    pub kind: &'static str,
    /// Value (never a raw credential or user name).
    pub value: String,
}

/// The endpoint a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointRef {
    /// Service (Host).
    pub service: String,
    /// Method (`*` for campaigns over many methods).
    pub method: String,
    /// Template (`*` for campaigns over many endpoints).
    pub template: String,
}

/// A sample request, sensitive values masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Request start, µs since the epoch.
    pub time_us: u64,
    /// Client address.
    pub client_ip: IpAddr,
    /// Method.
    pub method: String,
    /// Path with ID-like segments masked.
    pub path: String,
    /// Query with every value masked (`page=***`), when there was one.
    pub query: Option<String>,
    /// Response status.
    pub status: Option<u16>,
    /// User-agent family.
    pub user_agent_family: &'static str,
    /// The user name tried, masked per `apitap_labels` policy (e-mail, mobile) or replaced by
    /// its keyed hash.
    pub login_user: Option<String>,
    /// Sensitive records in the response, when known.
    pub records: Option<u32>,
    /// Login / OTP attempts: the inferred outcome (`success`, `failure`) and the signal that
    /// decided it (`login_form_again`, `token_issued`, … see [`crate::outcome::Signal`]).
    pub outcome: Option<(&'static str, &'static str)>,
    /// The server's address and port.
    pub server: Option<(IpAddr, u16)>,
    /// What served it on the sensor's host: unit, processes, container, pod (schema 1.4
    /// `server_workload`, R-CAP-5), when the sensor attributed it.
    pub server_workload: Option<std::sync::Arc<apitap_schema::Workload>>,
}

/// A campaign transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Create / Update / Close.
    pub activity: Activity,
    /// Stable id of the campaign: hash(detector, actor key, endpoint, campaign start).
    pub uid: String,
    /// Number of this report within the campaign (0 = Create).
    pub seq: u32,
    /// The detector.
    pub detector: Detector,
    /// Kind within the detector (`per_source`, `distributed`, `possible_account_takeover`, …).
    pub kind: &'static str,
    /// One-line title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Confidence 0–100.
    pub confidence: u8,
    /// When this report was produced (stream time), µs.
    pub time_us: u64,
    /// When the campaign was first reported, µs.
    pub created_us: u64,
    /// First event of the campaign, µs.
    pub start_us: u64,
    /// Last event of the campaign so far, µs.
    pub end_us: u64,
    /// Events attributed to the campaign.
    pub events: u64,
    /// Detector counters (largest window values seen): `distinct_usernames`, `failures`, ….
    pub counts: Vec<(&'static str, u64)>,
    /// Actor keys.
    pub actor: Vec<ActorKey>,
    /// Distinct source addresses seen in the campaign (distributed campaigns), up to 16.
    pub sources: Vec<IpAddr>,
    /// Total distinct sources (estimate beyond the list).
    pub source_count: u64,
    /// Distinct sources per network (/16 for IPv4, /48 for IPv6), most sources first, at
    /// most 16 networks: the networks a distributed campaign comes from.
    pub networks: Vec<(String, u64)>,
    /// Sources in networks beyond that list.
    pub networks_other: u64,
    /// The endpoint.
    pub endpoint: EndpointRef,
    /// Sample requests, masked.
    pub samples: Vec<Sample>,
}

impl Finding {
    /// A counter by name.
    pub fn count(&self, name: &str) -> Option<u64> {
        self.counts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// An actor key by kind.
    pub fn actor_key(&self, kind: &str) -> Option<&str> {
        self.actor
            .iter()
            .find(|k| k.kind == kind)
            .map(|k| k.value.as_str())
    }
}
