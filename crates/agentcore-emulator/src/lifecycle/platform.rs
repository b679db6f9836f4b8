//! The AgentCore Runtime platform a runtime runs on (`platformVersion`), and the account
//! quotas of 2026 that depend on the region.
//!
//! V1 starts the container for every new session, so a cold start is the container's own
//! start-up. V2 starts the container once per agent version, takes a snapshot after the
//! warmup build hook, and restores that snapshot for every new session: its cold start is a
//! restore, about 2 s at p75 whatever the image's size.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

use super::latency::LatencyProfile;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum Platform {
    /// The default: every figure the emulator and its tests used before V2 existed.
    #[default]
    V1,
    V2,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::V1, Platform::V2];

    /// A new session's first invocation on this platform.
    pub const fn cold_start(self) -> LatencyProfile {
        match self {
            Platform::V1 => LatencyProfile::COLD_START,
            Platform::V2 => LatencyProfile::COLD_START_V2,
        }
    }

    /// As the service spells `platformVersion`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::V1 => "V1",
            Platform::V2 => "V2",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = String;

    /// `V1`/`V2`, in either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "V1" => Ok(Platform::V1),
            "V2" => Ok(Platform::V2),
            other => Err(format!("unknown platform version {other:?}, expected V1 or V2")),
        }
    }
}

/// Active sessions an account may hold by default in `region` (2026): 5,000 in the two
/// largest regions, 2,500 elsewhere.
pub fn default_active_sessions(region: &str) -> usize {
    match region {
        "us-east-1" | "us-west-2" => 5_000,
        _ => 2_500,
    }
}

/// The region the emulator stands for when none is given.
pub const DEFAULT_REGION: &str = "us-east-1";

/// New sessions per second per account and region by default (2026), shared by every
/// runtime and endpoint of the account.
pub const DEFAULT_CREATION_RATE: f64 = 25.0;
