//! The instance's own pace toward the upstream, lowered when the upstream throttles (SPEC §7:
//! "the instance lowers its pace adaptively"). Additive increase, multiplicative decrease, as
//! TCP does with its window:
//!
//! - An upstream `454` halves the pace: the new limit is half of what was being relayed (the
//!   recipients of the last few seconds), or half the current limit if that is lower, and never
//!   under [`FLOOR`]. Throttles within [`COOLDOWN`] of a decrease are one event: a burst of
//!   concurrent 454s halves once, not once per message.
//! - Without a new throttle, the limit climbs back linearly: it doubles (back to where it was
//!   before the halving) over `recovery`, and then pacing stops. The account's configured rate,
//!   when set, is a ceiling as well.
//!
//! Local to each instance on purpose: a throttle tells this instance to slow down now, and
//! needs no round trip to a shared store. The shared account rate is the store's job.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::window::admits;

/// The slowest pace: one recipient per second.
pub const FLOOR: f64 = 1.0;
/// Throttles this close to a decrease do not decrease again.
pub const COOLDOWN: Duration = Duration::from_secs(1);
/// How far back "what was being relayed" looks.
const OBSERVED: Duration = Duration::from_secs(5);

/// The adaptive pace of one instance.
#[derive(Debug)]
pub struct AdaptivePace {
    state: Mutex<State>,
    /// How long the limit takes to climb back to twice its lowered value.
    recovery: Duration,
    /// The account's configured rate (0: none): pacing never allows more, and stops above it.
    ceiling: f64,
}

#[derive(Debug)]
struct State {
    /// `Some` while pacing: the limit set at the last decrease and when.
    lowered: Option<(f64, Instant)>,
    /// The pace's own token bucket (seconds since `epoch`, tokens).
    tokens: f64,
    at: Instant,
    /// Recipients relayed, per whole second, for the observed rate: (second, recipients).
    relayed: Vec<(u64, u64)>,
    epoch: Instant,
}

impl AdaptivePace {
    pub fn new(recovery: Duration, ceiling: f64) -> AdaptivePace {
        let now = Instant::now();
        AdaptivePace {
            state: Mutex::new(State {
                lowered: None,
                tokens: 0.0,
                at: now,
                relayed: Vec::new(),
                epoch: now,
            }),
            recovery: recovery.max(Duration::from_millis(1)),
            ceiling,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limit in recipients per second at `now`, `None` when not pacing.
    pub fn limit(&self, now: Instant) -> Option<f64> {
        let mut state = self.lock();
        self.current(&mut state, now)
    }

    fn current(&self, state: &mut State, now: Instant) -> Option<f64> {
        let (base, since) = state.lowered?;
        let climbed =
            now.saturating_duration_since(since).as_secs_f64() / self.recovery.as_secs_f64();
        let limit = base * (1.0 + climbed);
        let done = climbed >= 1.0 || (self.ceiling > 0.0 && limit >= self.ceiling);
        if done {
            state.lowered = None;
            return None;
        }
        Some(limit)
    }

    /// Whether `recipients` may go now: `Ok` (taken), or how long until they may.
    pub fn admit(&self, recipients: u32, now: Instant) -> Result<(), Duration> {
        let mut state = self.lock();
        let Some(limit) = self.current(&mut state, now) else {
            return Ok(());
        };
        let tokens = refill(&state, limit, now);
        match admits(tokens, limit, recipients) {
            Ok(()) => {
                state.tokens = tokens - f64::from(recipients);
                state.at = now;
                Ok(())
            }
            Err(wait_ms) => Err(Duration::from_millis(wait_ms)),
        }
    }

    /// Gives back what `admit` took for a message that did not go.
    pub fn give_back(&self, recipients: u32, now: Instant) {
        let mut state = self.lock();
        if let Some(limit) = self.current(&mut state, now) {
            state.tokens = (refill(&state, limit, now) + f64::from(recipients)).min(limit.max(1.0));
            state.at = now;
        }
    }

    /// The upstream accepted `recipients`.
    pub fn on_relayed(&self, recipients: u32, now: Instant) {
        let mut state = self.lock();
        let second = now.saturating_duration_since(state.epoch).as_secs();
        match state.relayed.last_mut() {
            Some((s, count)) if *s == second => *count += u64::from(recipients),
            _ => state.relayed.push((second, u64::from(recipients))),
        }
        let oldest = second.saturating_sub(OBSERVED.as_secs());
        state.relayed.retain(|(s, _)| *s >= oldest);
    }

    /// The upstream answered 454: halve the pace (once per [`COOLDOWN`]). The new limit.
    pub fn on_throttled(&self, now: Instant) -> f64 {
        let mut state = self.lock();
        let current = self.current(&mut state, now);
        if let (Some(limit), Some((_, since))) = (current, state.lowered)
            && now.saturating_duration_since(since) < COOLDOWN
        {
            return limit;
        }
        let second = now.saturating_duration_since(state.epoch).as_secs();
        let oldest = second.saturating_sub(OBSERVED.as_secs());
        let recent: u64 = state
            .relayed
            .iter()
            .filter(|(s, _)| *s >= oldest)
            .map(|(_, n)| n)
            .sum();
        let observed = recent as f64 / OBSERVED.as_secs_f64();
        let mut before = current.unwrap_or(f64::INFINITY).min(observed);
        if self.ceiling > 0.0 {
            before = before.min(self.ceiling);
        }
        let lowered = (before / 2.0).max(FLOOR);
        state.lowered = Some((lowered, now));
        // The upstream just said "too fast": the next recipient waits its turn.
        state.tokens = 0.0;
        state.at = now;
        lowered
    }
}

fn refill(state: &State, limit: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(state.at).as_secs_f64();
    (state.tokens + limit * elapsed).min(limit.max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn not_pacing_until_the_upstream_throttles() {
        let pace = AdaptivePace::new(10 * SECOND, 0.0);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(pace.admit(1, now), Ok(()));
        }
        assert_eq!(pace.limit(now), None);
    }

    #[test]
    fn a_throttle_halves_what_was_being_relayed() {
        let pace = AdaptivePace::new(10 * SECOND, 0.0);
        let t0 = Instant::now();
        // 100 recipients per second for five seconds.
        for s in 0..5 {
            pace.on_relayed(100, t0 + s * SECOND);
        }
        let lowered = pace.on_throttled(t0 + 5 * SECOND);
        assert_eq!(lowered, 50.0);
        // The bucket starts empty: the next recipient waits.
        assert!(pace.admit(1, t0 + 5 * SECOND).is_err());
        assert!(pace.admit(1, t0 + 6 * SECOND).is_ok());
    }

    #[test]
    fn throttles_within_the_cooldown_halve_once() {
        let pace = AdaptivePace::new(100 * SECOND, 0.0);
        let t0 = Instant::now();
        for s in 0..5 {
            pace.on_relayed(80, t0 + s * SECOND);
        }
        let first = pace.on_throttled(t0 + 5 * SECOND);
        let again = pace.on_throttled(t0 + 5 * SECOND + COOLDOWN / 2);
        assert!((first - again).abs() < 1.0, "{first} {again}");
        let later = pace.on_throttled(t0 + 7 * SECOND);
        assert!(later < first * 0.6, "{first} {later}");
    }

    #[test]
    fn never_below_the_floor() {
        let pace = AdaptivePace::new(10 * SECOND, 0.0);
        let t0 = Instant::now();
        let mut now = t0;
        for _ in 0..20 {
            now += 2 * SECOND;
            assert!(pace.on_throttled(now) >= FLOOR);
        }
        assert_eq!(pace.limit(now), Some(FLOOR));
    }

    #[test]
    fn the_limit_recovers_linearly_then_pacing_stops() {
        let pace = AdaptivePace::new(10 * SECOND, 0.0);
        let t0 = Instant::now();
        let lowered = pace.on_throttled(t0);
        assert_eq!(lowered, FLOOR);
        let halfway = pace.limit(t0 + 5 * SECOND).unwrap();
        assert!((halfway - 1.5).abs() < 1e-9, "{halfway}");
        assert_eq!(pace.limit(t0 + 10 * SECOND), None);
        assert_eq!(pace.admit(1000, t0 + 10 * SECOND), Ok(()));
    }

    #[test]
    fn the_account_rate_is_a_ceiling() {
        let pace = AdaptivePace::new(100 * SECOND, 4.0);
        let t0 = Instant::now();
        for s in 0..5 {
            pace.on_relayed(1000, t0 + s * SECOND);
        }
        assert_eq!(pace.on_throttled(t0 + 5 * SECOND), 2.0);
        // Back at the account's rate: pacing stops (the store's rate applies again).
        assert_eq!(pace.limit(t0 + 105 * SECOND), None);
    }

    #[test]
    fn giving_back_restores_the_tokens() {
        let pace = AdaptivePace::new(100 * SECOND, 0.0);
        let t0 = Instant::now();
        pace.on_throttled(t0);
        let t1 = t0 + SECOND;
        assert!(pace.admit(1, t1).is_ok());
        assert!(pace.admit(1, t1).is_err());
        pace.give_back(1, t1);
        assert!(pace.admit(1, t1).is_ok());
    }
}
