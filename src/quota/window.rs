//! The two counting rules, as pure functions of the time they are given, so that they are tested
//! without a clock and the Redis script (`redis.lua`) can mirror them line for line.
//!
//! - **Rate** (`max_send_rate`, recipients per second): a token bucket refilled at the rate,
//!   holding at most one second of sending (at least one recipient). A message is admitted when
//!   the bucket holds its recipients, or when the bucket is full: a message with more recipients
//!   than one second allows still goes, and the bucket goes into debt that later messages wait
//!   out. That is SES's "short bursts, but not sustained" (ses-iam-facts A4), and the long-run
//!   rate never exceeds the limit.
//! - **24 hours** (`max_24_hour_send`, recipients): a sliding window of one-minute buckets and
//!   their running total. A bucket leaves the total only once every recipient in it is more than
//!   24 hours old, so the window is between 24 h and 24 h + 1 min long: it never lets through
//!   more than the quota in any 24 hours, and holds a recipient at most one minute longer than
//!   needed. 1,441 buckets at most per scope, each a few bytes, and amortized O(1) per check
//!   (a bucket is dropped once).

use std::collections::VecDeque;

/// One minute, the width of a 24-hour window bucket.
pub const MINUTE_MS: u64 = 60_000;
/// Buckets kept: the current minute and the 1,440 before it.
pub const WINDOW_MINUTES: u64 = 1440;

/// The minute `now_ms` falls in.
pub fn minute_of(now_ms: u64) -> u64 {
    now_ms / MINUTE_MS
}

/// The most a rate bucket holds: one second of sending, at least one recipient.
pub fn capacity(rate: f64) -> f64 {
    rate.max(1.0)
}

/// A rate bucket: tokens (recipients that may go now; negative after a burst) as of `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateBucket {
    pub tokens: f64,
    pub at_ms: u64,
}

impl RateBucket {
    /// A bucket that was never used: full.
    pub fn full(rate: f64, now_ms: u64) -> RateBucket {
        RateBucket {
            tokens: capacity(rate),
            at_ms: now_ms,
        }
    }

    /// The tokens at `now_ms`, refilled since `at_ms` at `rate` per second, capped at the
    /// capacity. A clock that went backwards refills nothing.
    pub fn tokens_at(&self, rate: f64, now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        (self.tokens + rate * elapsed).min(capacity(rate))
    }

    /// Whether `recipients` may go at `now_ms`: `Ok`, or how long (ms) until they may.
    pub fn admits(&self, rate: f64, recipients: u32, now_ms: u64) -> Result<(), u64> {
        let tokens = self.tokens_at(rate, now_ms);
        admits(tokens, rate, recipients)
    }

    /// After the clock stepped back: counts the refill from `now_ms` on, keeping the tokens.
    /// Without it a bucket last updated before the step refilled nothing until the clock
    /// caught up again: an empty bucket refused everything for as long as the step.
    pub fn rebase(&mut self, now_ms: u64) {
        self.at_ms = self.at_ms.min(now_ms);
    }

    /// Takes `recipients` at `now_ms` (after `admits` said yes).
    pub fn take(&mut self, rate: f64, recipients: u32, now_ms: u64) {
        self.tokens = self.tokens_at(rate, now_ms) - f64::from(recipients);
        // `tokens_at` counted the refill up to `now_ms` (none when the clock went back).
        self.at_ms = now_ms;
    }

    /// Gives back `recipients` taken for a message that was not relayed.
    pub fn give_back(&mut self, rate: f64, recipients: u32, now_ms: u64) {
        self.tokens = (self.tokens_at(rate, now_ms) + f64::from(recipients)).min(capacity(rate));
        self.at_ms = now_ms;
    }
}

/// Whether a bucket holding `tokens` admits `recipients` at `rate`: when it holds them all, or
/// when it is full (a message larger than one second of sending). Else the wait in ms.
pub fn admits(tokens: f64, rate: f64, recipients: u32) -> Result<(), u64> {
    let cap = capacity(rate);
    let wanted = f64::from(recipients);
    if tokens >= wanted || tokens >= cap {
        return Ok(());
    }
    let missing = wanted.min(cap) - tokens;
    // At least 1 ms, so a caller that sleeps the wait makes progress.
    Err(((missing / rate * 1000.0).ceil() as u64).max(1))
}

/// A sliding 24-hour count of recipients in one-minute buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DailyWindow {
    /// (minute, recipients), oldest first.
    buckets: VecDeque<(u64, u64)>,
    total: u64,
}

impl DailyWindow {
    /// Drops the buckets whose recipients are all more than 24 hours old at `minute`; the
    /// recipients still in the window.
    pub fn trim(&mut self, minute: u64) -> u64 {
        while let Some(&(oldest, count)) = self.buckets.front() {
            if oldest + WINDOW_MINUTES + 1 > minute {
                break;
            }
            self.total -= count;
            self.buckets.pop_front();
        }
        self.total
    }

    /// Counts `recipients` in `minute`.
    pub fn add(&mut self, minute: u64, recipients: u64) {
        match self.buckets.back_mut() {
            Some((last, count)) if *last == minute => *count += recipients,
            // A clock that went backwards counts into the newest bucket: never lost.
            Some((last, count)) if *last > minute => *count += recipients,
            _ => self.buckets.push_back((minute, recipients)),
        }
        self.total += recipients;
    }

    /// Takes back `recipients` counted in `minute` (a message that was not relayed). A bucket
    /// already gone (more than 24 hours later) has nothing left to take back.
    pub fn remove(&mut self, minute: u64, recipients: u64) {
        if let Some((_, count)) = self.buckets.iter_mut().find(|(m, _)| *m == minute) {
            let taken = recipients.min(*count);
            *count -= taken;
            self.total -= taken;
        }
    }

    /// Raises the count to at least `total` (what SES says was sent in the last 24 hours), the
    /// difference counted in `minute`.
    pub fn raise_to(&mut self, minute: u64, total: u64) {
        let current = self.trim(minute);
        if total > current {
            self.add(minute, total - current);
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    #[test]
    fn a_full_bucket_admits_one_second_of_recipients_then_waits() {
        let rate = 2.0;
        let mut bucket = RateBucket::full(rate, 0);
        for _ in 0..2 {
            assert_eq!(bucket.admits(rate, 1, 0), Ok(()));
            bucket.take(rate, 1, 0);
        }
        assert_eq!(bucket.admits(rate, 1, 0), Err(500));
        assert_eq!(bucket.admits(rate, 1, 499), Err(2));
        assert_eq!(bucket.admits(rate, 1, 500), Ok(()));
    }

    #[test]
    fn a_message_larger_than_a_second_goes_from_a_full_bucket_and_is_paid_back() {
        let rate = 1.0;
        let mut bucket = RateBucket::full(rate, 0);
        assert_eq!(bucket.admits(rate, 5, 0), Ok(()));
        bucket.take(rate, 5, 0);
        // -4 tokens: the next recipient waits until the bucket holds one again.
        assert_eq!(bucket.admits(rate, 1, 0), Err(5 * S));
        assert_eq!(bucket.admits(rate, 5, 4 * S), Err(S));
        assert_eq!(bucket.admits(rate, 5, 5 * S), Ok(()));
    }

    #[test]
    fn a_fractional_rate_admits_one_recipient_per_period() {
        let rate = 0.01;
        let mut bucket = RateBucket::full(rate, 0);
        bucket.take(rate, 1, 0);
        assert_eq!(bucket.admits(rate, 1, 0), Err(100 * S));
        assert_eq!(bucket.admits(rate, 1, 100 * S), Ok(()));
    }

    #[test]
    fn giving_back_restores_at_most_the_capacity() {
        let rate = 3.0;
        let mut bucket = RateBucket::full(rate, 0);
        bucket.take(rate, 3, 0);
        bucket.give_back(rate, 3, 0);
        assert_eq!(bucket.tokens, 3.0);
        bucket.give_back(rate, 3, 0);
        assert_eq!(bucket.tokens, 3.0);
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let rate = 1.0;
        let mut bucket = RateBucket::full(rate, 10 * S);
        bucket.take(rate, 1, 10 * S);
        assert!(bucket.admits(rate, 1, 5 * S).is_err());
    }

    #[test]
    fn after_the_clock_steps_back_the_bucket_refills_from_the_new_time() {
        let rate = 1.0;
        let mut bucket = RateBucket::full(rate, 3600 * S);
        bucket.take(rate, 1, 3600 * S);
        // The clock steps back an hour: nothing refilled for the step, one second refills one.
        bucket.rebase(0);
        assert_eq!(bucket.admits(rate, 1, 0), Err(S));
        assert_eq!(bucket.admits(rate, 1, S), Ok(()));
        bucket.take(rate, 1, S);
        assert_eq!(bucket.admits(rate, 1, 2 * S), Ok(()));
    }

    #[test]
    fn the_window_keeps_a_recipient_between_24_hours_and_24_hours_and_a_minute() {
        let mut window = DailyWindow::default();
        window.add(100, 3);
        window.add(100, 2);
        window.add(101, 1);
        assert_eq!(window.trim(100 + WINDOW_MINUTES), 6);
        // Minute 100 ends 24 h before the start of minute 1541: all of it is older.
        assert_eq!(window.trim(100 + WINDOW_MINUTES + 1), 1);
        assert_eq!(window.trim(101 + WINDOW_MINUTES + 1), 0);
        assert_eq!(window.buckets.len(), 0);
    }

    #[test]
    fn removing_takes_back_only_what_the_bucket_still_holds() {
        let mut window = DailyWindow::default();
        window.add(7, 2);
        window.remove(7, 5);
        assert_eq!(window.total(), 0);
        window.add(8, 4);
        window.remove(7, 1);
        assert_eq!(window.total(), 4);
        window.remove(8, 1);
        assert_eq!(window.total(), 3);
    }

    #[test]
    fn raising_adds_only_the_difference() {
        let mut window = DailyWindow::default();
        window.add(1, 10);
        window.raise_to(2, 4);
        assert_eq!(window.total(), 10);
        window.raise_to(2, 25);
        assert_eq!(window.total(), 25);
        // The raised part leaves with its own minute.
        assert_eq!(window.trim(1 + WINDOW_MINUTES + 1), 15);
    }
}
