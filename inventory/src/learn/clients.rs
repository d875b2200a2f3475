//! Client classification: internal and partner address ranges.

use super::*;

/// Classifies client addresses (R-INV-4).
#[derive(Debug, Clone, Default)]
pub struct ClientClassifier {
    /// Internal ranges.
    pub internal: Vec<ipnet::IpNet>,
    /// Partner name → ranges.
    pub partners: Vec<(String, Vec<ipnet::IpNet>)>,
}

impl ClientClassifier {
    /// True when `ip` is in an internal range.
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.internal.iter().any(|n| n.contains(&ip))
    }

    /// The partner `ip` belongs to, if any.
    pub fn partner(&self, ip: IpAddr) -> Option<&str> {
        self.partners
            .iter()
            .find(|(_, nets)| nets.iter().any(|n| n.contains(&ip)))
            .map(|(name, _)| name.as_str())
    }
}
