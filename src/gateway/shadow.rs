//! The shadow policy set (`[iam] shadow_dir`): a second, complete users/policies set decided
//! beside the live one on every transaction. Only the live set decides; where the two disagree
//! on whether the message may go, the disagreement is logged on its own line and counted by
//! user and direction, so a tightened set can be watched on real traffic before it is promoted.

use super::StartError;
use super::decide::{Authorizer, Ruling};
use super::load::load_authorizer;
use crate::config::Config;
use crate::iam::Outcome;

/// The shadow set's authorizer, when `[iam] shadow_dir` is set. A broken shadow set fails the
/// start or reload like a broken live one: a silently missing shadow would read as "no change".
pub(super) fn load_shadow(config: &Config) -> Result<Option<Authorizer>, StartError> {
    if config.iam.shadow_dir.as_os_str().is_empty() {
        return Ok(None);
    }
    let mut shadow = config.clone();
    shadow.iam.dir = config.iam.shadow_dir.clone();
    shadow.iam.embedded = false;
    Ok(Some(load_authorizer(&shadow)?.0))
}

/// A ruling as the logs name it: `allowed`, `explicit-deny`, `implicit-deny` or the kind of a
/// refusal before policy, with its deciding statements (or reason).
pub fn verdict(ruling: &Ruling) -> (&'static str, String) {
    match ruling {
        Ruling::Refused { kind, why, .. } => (kind, why.clone()),
        Ruling::Denied { decision, .. } => (
            if decision.outcome == Outcome::ExplicitDeny {
                "explicit-deny"
            } else {
                "implicit-deny"
            },
            decision.reason(),
        ),
        Ruling::Allowed { decision, .. } => ("allowed", decision.reason()),
    }
}

/// Which way the shadow set would change a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Live allows, shadow refuses.
    NewlyRefused,
    /// Live refuses, shadow allows.
    NewlyAllowed,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::NewlyRefused => "newly-refused",
            Direction::NewlyAllowed => "newly-allowed",
        }
    }

    /// The direction of a change from `live_allowed` to `shadow_allowed`, if any.
    pub fn of(live_allowed: bool, shadow_allowed: bool) -> Option<Direction> {
        match (live_allowed, shadow_allowed) {
            (true, false) => Some(Direction::NewlyRefused),
            (false, true) => Some(Direction::NewlyAllowed),
            _ => None,
        }
    }
}

/// Whether the two rulings disagree on sending, and which way.
pub fn disagreement(live: &Ruling, shadow: &Ruling) -> Option<Direction> {
    let allowed = |r: &Ruling| matches!(r, Ruling::Allowed { .. });
    Direction::of(allowed(live), allowed(shadow))
}
