//! Accept loops that survive resource exhaustion. `accept()` fails at once and keeps failing
//! while the process is out of file descriptors (EMFILE) or the kernel is out of memory; a loop
//! that simply retries spins a core and floods the log. Every listener (SMTP and metrics)
//! accepts through [`accept_with_backoff`].

use std::future::Future;
use std::time::Duration;

use tracing::{debug, warn};

/// The first pause after a failed accept.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between attempts while accept keeps failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Exponential backoff over consecutive accept failures: 10 ms, 20 ms, ... up to 1 s; reset by
/// the next success.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    next: Option<Duration>,
}

impl AcceptBackoff {
    /// Records a failure; returns how long to wait before the next attempt, and whether this
    /// failure starts a new run of failures (only that one is logged as a warning).
    pub fn on_error(&mut self) -> (Duration, bool) {
        let first = self.next.is_none();
        let wait = self.next.unwrap_or(FIRST_BACKOFF);
        self.next = Some((wait * 2).min(MAX_BACKOFF));
        (wait, first)
    }

    /// Records a success: the next failure waits the shortest time again.
    pub fn on_success(&mut self) {
        self.next = None;
    }
}

/// Calls `accept` until it succeeds, sleeping with [`AcceptBackoff`] between failures. `what`
/// names the listener in the log.
pub async fn accept_with_backoff<T, F, Fut>(
    what: &str,
    backoff: &mut AcceptBackoff,
    mut accept: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(accepted) => {
                backoff.on_success();
                return accepted;
            }
            Err(error) => {
                let (wait, first) = backoff.on_error();
                if first {
                    warn!(listener = what, error = %error, "accept failed; backing off until it succeeds again");
                } else {
                    debug!(listener = what, error = %error, wait_ms = wait.as_millis() as u64, "accept failed again");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_second_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let waits: Vec<u64> = (0..10)
            .map(|_| backoff.on_error().0.as_millis() as u64)
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        backoff.on_success();
        assert_eq!(backoff.on_error(), (FIRST_BACKOFF, true));
        assert!(
            !backoff.on_error().1,
            "only the first failure of a run is logged"
        );
    }

    /// An accept that fails forever (EMFILE) is retried about a dozen times in ten seconds, not
    /// millions: the loop sleeps instead of spinning.
    #[tokio::test(start_paused = true)]
    async fn failing_accept_does_not_spin() {
        let attempts = std::cell::Cell::new(0u32);
        let mut backoff = AcceptBackoff::default();
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            accept_with_backoff("test", &mut backoff, || {
                attempts.set(attempts.get() + 1);
                async { Err::<(), _>(std::io::Error::from_raw_os_error(24)) }
            }),
        )
        .await;
        assert!(outcome.is_err(), "never succeeds");
        assert!(
            (8..=20).contains(&attempts.get()),
            "{} attempts in 10 s",
            attempts.get()
        );
    }
}
