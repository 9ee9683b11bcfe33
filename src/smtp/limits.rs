//! Per-address bookkeeping: concurrent connections per client, and AUTH failures per client.
//! Both use tokio's clock, so tests can move time with a paused runtime.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps hold counters only; a panic elsewhere cannot leave them inconsistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The unit one client is counted as: an IPv4 address, or the /64 of an IPv6 address (one
/// subscriber commonly holds a whole /64, so counting single IPv6 addresses would let a single
/// client open 2^64 times the cap). IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn connection_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            v6.to_bits() & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
}

/// Caps concurrent connections per client address (per /64 for IPv6, see [`connection_key`]).
#[derive(Debug)]
pub struct PerIpConnections {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one connection slot of an address; dropping it frees the slot.
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<PerIpConnections>,
    ip: IpAddr,
}

impl PerIpConnections {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(PerIpConnections {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `ip`, or `None` when it already has `max` connections.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = connection_key(ip);
        let mut open = lock(&self.open);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            owner: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.owner.open);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Throttles AUTH per client address: after `max_failures` failures within `window`, further
/// attempts are refused until the window has passed (SES answers such clients with 454).
#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Past this many tracked addresses, stale entries are pruned on insert.
const THROTTLE_PRUNE_AT: usize = 10_000;

impl AuthThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        AuthThrottle {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// True when `ip` has failed too often within the window.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let failures = lock(&self.failures);
        failures.get(&ip).is_some_and(|(count, since)| {
            *count >= self.max_failures && since.elapsed() < self.window
        })
    }

    /// Records a failed AUTH from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let mut failures = lock(&self.failures);
        if failures.len() >= THROTTLE_PRUNE_AT {
            failures.retain(|_, (_, since)| since.elapsed() < self.window);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_released_on_drop() {
        let limit = PerIpConnections::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let a = limit.acquire(ip).unwrap();
        let _b = limit.acquire(ip).unwrap();
        assert!(limit.acquire(ip).is_none());
        assert!(limit.acquire(other).is_some());
        drop(a);
        assert!(limit.acquire(ip).is_some());
    }

    #[test]
    fn per_ip_slots_count_an_ipv6_slash_64_as_one_client() {
        let limit = PerIpConnections::new(1);
        let _held = limit.acquire("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(
            limit
                .acquire("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap())
                .is_none(),
            "same /64"
        );
        assert!(limit.acquire("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = limit.acquire("192.0.2.7".parse().unwrap()).unwrap();
        assert!(
            limit.acquire("::ffff:192.0.2.7".parse().unwrap()).is_none(),
            "an IPv4-mapped address is its IPv4 address"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_window() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        throttle.record_failure(ip);
        assert!(!throttle.is_blocked(ip));
        throttle.record_failure(ip);
        assert!(throttle.is_blocked(ip));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!throttle.is_blocked(ip));
    }
}
