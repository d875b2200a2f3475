//! apitap-labels owns sensitive-data analysis (R-SEN-1, R-SEN-2) and payload minimisation
//! (R-CAP-8):
//!
//! - **Event facts** ([`facts::EventFacts`]): what every analysis of an event reads, computed
//!   once — decoded bodies, each JSON body's one walk ([`json::JsonTape`]), the request-header
//!   scan, the credential-name rules.
//! - **Data labels** ([`Scanner::label_event`]): PRC resident IDs, USCC, CN mobile/landline,
//!   bank and credit cards, IBAN, passports and permits, e-mail, IP addresses, US SSN,
//!   credentials and secrets, personal attributes, and application-masked values, each
//!   validated (checksums, dates, IIN ranges), scored with context from field names, and located
//!   (URL, header, cookie, JSON path, form field, XML element, multipart part, CSV column).
//!   Each body is parsed once and every value is tokenised once by a byte-class automaton.
//!   Findings carry masked samples and keyed hashes, never raw values.
//! - **API classification** ([`classify`]): function class and sensitivity level.
//! - **Minimisation** ([`minimise`]): `full | sample | labels` payload modes for the sensor.
//!
//! Weak points (R-SEN-3) are not here: the stateful per-endpoint tracker and its rules live
//! beside the detections, in `apitap_detect::weak`, and read these labels and facts.
//!
//! Rules and tables are documented in `docs/sensitive-data.md`.
#![warn(missing_docs)]

mod body;
pub mod classify;
mod event;
pub mod facts;
mod hash;
mod hints;
pub mod json;
mod label;
mod mask;
mod minimise;
mod names;
mod panic;
pub mod protobuf;
mod scan;
pub mod validate;

pub use apitap_schema::PayloadMode;
pub use body::BodyKind;
pub use classify::{
    Classification, FunctionClass, Sensitivity, classify_event, function_class, sensitivity,
    sensitivity_with,
};
pub use event::{
    AuthScheme, EventLabels, MessageShape, ScanStats, Scanner, TracedHash, is_body_part,
};
pub use hash::{HashKey, KeyFileError, normalise};
pub use hints::{HintClassifier, KeyHints};
pub use label::{
    DataClass, Direction, Finding, Label, Location, MaskShape, Notes, Part, ValueHash,
};
pub use mask::{Keep, policy as mask_policy, union_unknown};
pub use minimise::{MinimiseOptions, MinimisedEvent, labels_from_wire, labels_to_wire, minimise};
pub use panic::install_redacting_panic_hook;
pub use scan::{LabelConfig, Labeller};

/// Errors of this crate. Messages never contain values from traffic.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// The keyword automaton could not be built (a bug: the patterns are static).
    #[error("could not build the keyword automaton")]
    Automaton,
}
