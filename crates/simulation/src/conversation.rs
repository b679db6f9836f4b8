//! The conversation workload: users who come back. A conversation opens at a seeded Poisson
//! instant and sends a fixed number of turns, each an exponential think time after the one
//! before; with affinity on, its later turns go to the session its first turn claimed while
//! that session is still alive (the lease rule of get-session's affinity, issue 12).

use crate::{Policy, Profile, Run, Settings, SimError};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::num::NonZeroU32;
use std::time::Duration;
use warmpool_core::clock::millis;
use warmpool_core::num::floor_u64;

/// The shape of every conversation of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversation {
    pub turns: NonZeroU32,
    /// The mean pause between one turn's arrival and the next one's.
    pub think_time: Duration,
}

/// One request of the workload; `conversation` numbers the conversations from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    pub at: u64,
    pub conversation: u32,
    pub turn: u32,
}

impl Conversation {
    /// The turns on the simulation clock, in time order: conversations open at the profile's
    /// rate divided by the turns, so the requests arrive at about the profile's rate (a
    /// conversation that runs past the end keeps only the turns before it). The same seed gives
    /// the same turns, with affinity on or off.
    pub fn turns(&self, profile: &Profile, lead_in: Duration, seed: u64) -> Vec<Turn> {
        let per_conversation = f64::from(self.turns.get());
        let opens = profile.arrivals_scaled(lead_in, seed, 1.0 / per_conversation);
        let end = millis(lead_in) + millis(profile.duration);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7a1c_0003);
        let think_ms = self.think_time.as_secs_f64() * 1_000.0;
        let mut turns = Vec::with_capacity(opens.len() * self.turns.get() as usize);
        for (conversation, open) in opens.into_iter().enumerate() {
            let conversation = u32::try_from(conversation).unwrap_or(u32::MAX);
            let mut at = open as f64;
            for turn in 0..self.turns.get() {
                if turn > 0 {
                    let u: f64 = 1.0 - rng.random::<f64>();
                    at += -u.ln() * think_ms;
                }
                if at >= end as f64 {
                    break;
                }
                turns.push(Turn {
                    at: floor_u64(at),
                    conversation,
                    turn,
                });
            }
        }
        turns.sort_by_key(|t| (t.at, t.conversation, t.turn));
        turns
    }
}

/// The project's policy on each profile with conversations of `shape`, affinity off then on
/// (the same seed, so the same turns), `threads` runs at a time: one (one-shot, affinity) pair
/// per profile.
pub fn side_by_side(
    profiles: &[Profile],
    settings: &Settings,
    shape: Conversation,
    threads: usize,
) -> Result<Vec<(Run, Run)>, SimError> {
    let jobs = profiles
        .iter()
        .flat_map(|p| {
            [false, true].map(|affinity| {
                let settings = Settings {
                    conversation: Some(shape),
                    affinity,
                    ..settings.clone()
                };
                (p.clone(), Policy::Project, settings)
            })
        })
        .collect();
    let mut runs = crate::run_jobs(jobs, threads)?.into_iter();
    let mut pairs = Vec::new();
    while let (Some(one_shot), Some(affinity)) = (runs.next(), runs.next()) {
        pairs.push((one_shot, affinity));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shape;

    #[test]
    fn turns_arrive_at_the_profiles_rate_in_conversations_of_the_given_length() {
        let steady = Profile {
            name: "t".into(),
            duration: Duration::from_secs(3_600),
            shape: Shape::Steady { rate: 10.0 },
            creation_quota: 25,
        };
        let shape = Conversation {
            turns: NonZeroU32::new(5).unwrap(),
            think_time: Duration::from_secs(20),
        };
        let turns = shape.turns(&steady, Duration::ZERO, 3);
        assert!((34_000..=38_000).contains(&turns.len()), "{}", turns.len());
        assert!(turns.windows(2).all(|w| w[0].at <= w[1].at));
        let firsts = turns.iter().filter(|t| t.turn == 0).count();
        assert!(turns.len() <= firsts * 5 && turns.len() > firsts * 49 / 10, "{firsts}");
        assert_eq!(turns, shape.turns(&steady, Duration::ZERO, 3));
    }
}
