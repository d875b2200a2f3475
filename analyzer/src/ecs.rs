//! The alert document format of the analyzer's outputs; ECS rendering itself is
//! [`apitap_detect::ecs`], beside the OCSF renderer, both from the one typed alert.

use serde::{Deserialize, Serialize};

pub use apitap_detect::ecs::{ECS_VERSION, render};

/// Document format of the alert outputs (file and Kafka alert topic alike).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AlertFormat {
    /// OCSF 1.x findings (2004 detections, 2006 data security, 2007 posture).
    #[default]
    Ocsf,
    /// The same findings mapped to ECS 8.x.
    Ecs,
}
