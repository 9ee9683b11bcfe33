//! Per-address bookkeeping: concurrent connections per client, and AUTH failure budgets per
//! client address and user name.
//! Both use tokio's clock, so tests can move time with a paused runtime.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ipnet::IpNet;
use tokio::time::Instant;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps hold counters only; a panic elsewhere cannot leave them inconsistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The unit one client is counted as, for connection slots and AUTH throttling alike: an IPv4 address, or the /64 of an IPv6 address (one
/// subscriber commonly holds a whole /64, so counting single IPv6 addresses would let a single
/// client open 2^64 times the cap). IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// Caps concurrent connections per client address (per /64 for IPv6, see [`client_key`]).
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
        let ip = client_key(ip);
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

/// AUTH failure budgets (SPEC §6): `per_user` failures per (client address, user name) and
/// `per_address` failures per client address within `window`. The budget is taken before the
/// password is checked: a check in flight counts as a failure until it succeeds, so N parallel
/// attempts cannot all run when fewer failures remain. At most `in_flight_per_address` checks of
/// one address run or wait at once, so one address cannot fill the verification queue.
/// Addresses are keyed per IPv4 address and per IPv6 /64 ([`client_key`]); `exempt` networks
/// are never throttled.
#[derive(Debug, Clone)]
pub struct AuthThrottleSettings {
    pub per_user: u32,
    pub per_address: u32,
    pub in_flight_per_address: u32,
    pub window: Duration,
    pub exempt: Vec<IpNet>,
    /// The most addresses tracked at once (memory bound).
    pub max_addresses: usize,
}

/// Why an AUTH attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// The (address, user name) or the address has no failure budget left in the window.
    LockedOut,
    /// The address already has `in_flight_per_address` checks running or waiting.
    TooManyInFlight,
}

/// Failures and checks in flight of one (address, user name) within its address's window.
#[derive(Debug, Default, Clone, Copy)]
struct Budget {
    failures: u32,
    in_flight: u32,
}

impl Budget {
    fn spent(&self) -> u32 {
        self.failures.saturating_add(self.in_flight)
    }
}

#[derive(Debug)]
struct AddressEntry {
    window_start: Instant,
    total: Budget,
    /// By a keyed hash of the user name: fixed size whatever the client sends. An entry exists
    /// only while it has failures or checks in flight, each of which the address total counts,
    /// so there are at most `per_address + in_flight_per_address` per address.
    users: HashMap<u64, Budget>,
}

impl AddressEntry {
    fn new() -> Self {
        AddressEntry {
            window_start: Instant::now(),
            total: Budget::default(),
            users: HashMap::new(),
        }
    }

    /// Past the window, failures are forgotten; checks in flight still count.
    fn roll_window(&mut self, window: Duration) {
        if self.window_start.elapsed() >= window {
            self.window_start = Instant::now();
            self.total.failures = 0;
            self.users.retain(|_, user| {
                user.failures = 0;
                user.in_flight > 0
            });
        }
    }

    fn is_idle(&self, window: Duration) -> bool {
        self.total.in_flight == 0
            && (self.total.failures == 0 || self.window_start.elapsed() >= window)
    }
}

/// Throttles AUTH by client address and user name; see [`AuthThrottleSettings`].
#[derive(Debug)]
pub struct AuthThrottle {
    settings: AuthThrottleSettings,
    user_keys: RandomState,
    addresses: Mutex<HashMap<IpAddr, AddressEntry>>,
}

/// One AUTH attempt's share of the failure budget, taken before the check. End it with
/// [`succeeded`](Self::succeeded), [`failed`](Self::failed) or
/// [`not_checked`](Self::not_checked); dropped otherwise, it counts as a failure.
#[must_use]
pub struct AuthReservation<'a> {
    /// `None` for an exempt client.
    held: Option<(&'a AuthThrottle, IpAddr, u64)>,
}

impl AuthReservation<'_> {
    /// The password was right: the reservation is returned, no failure is recorded.
    pub fn succeeded(mut self) {
        self.end(false);
    }

    /// The password was wrong: the reservation becomes a failure.
    pub fn failed(mut self) {
        self.end(true);
    }

    /// The password could not be checked (the verifier was busy): no failure is recorded.
    pub fn not_checked(mut self) {
        self.end(false);
    }

    fn end(&mut self, failure: bool) {
        if let Some((throttle, key, user)) = self.held.take() {
            throttle.finish(key, user, failure);
        }
    }
}

impl Drop for AuthReservation<'_> {
    fn drop(&mut self) {
        self.end(true);
    }
}

impl AuthThrottle {
    pub fn new(settings: AuthThrottleSettings) -> Self {
        AuthThrottle {
            settings,
            user_keys: RandomState::new(),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one failure from the budgets of (`ip`, `username`) and of `ip`, or says why not.
    pub fn reserve(&self, ip: IpAddr, username: &str) -> Result<AuthReservation<'_>, AuthRefusal> {
        let ip = ip.to_canonical();
        if self.settings.exempt.iter().any(|net| net.contains(&ip)) {
            return Ok(AuthReservation { held: None });
        }
        let key = client_key(ip);
        let user = self.user_keys.hash_one(username);
        let s = &self.settings;
        let mut addresses = lock(&self.addresses);
        if !addresses.contains_key(&key) && addresses.len() >= s.max_addresses {
            make_room(&mut addresses, s.max_addresses, s.window);
        }
        let entry = addresses.entry(key).or_insert_with(AddressEntry::new);
        entry.roll_window(s.window);
        let budget = entry.users.get(&user).copied().unwrap_or_default();
        if entry.total.spent() >= s.per_address || budget.spent() >= s.per_user {
            return Err(AuthRefusal::LockedOut);
        }
        if entry.total.in_flight >= s.in_flight_per_address {
            return Err(AuthRefusal::TooManyInFlight);
        }
        entry.total.in_flight += 1;
        entry.users.entry(user).or_default().in_flight += 1;
        Ok(AuthReservation {
            held: Some((self, key, user)),
        })
    }

    fn finish(&self, key: IpAddr, user: u64, failure: bool) {
        let mut addresses = lock(&self.addresses);
        let Some(entry) = addresses.get_mut(&key) else {
            return;
        };
        entry.roll_window(self.settings.window);
        entry.total.in_flight = entry.total.in_flight.saturating_sub(1);
        if failure {
            entry.total.failures = entry.total.failures.saturating_add(1);
        }
        if let Some(budget) = entry.users.get_mut(&user) {
            budget.in_flight = budget.in_flight.saturating_sub(1);
            if failure {
                budget.failures = budget.failures.saturating_add(1);
            }
            if budget.spent() == 0 {
                entry.users.remove(&user);
            }
        }
        if entry.total.spent() == 0 {
            addresses.remove(&key);
        }
    }

    /// Addresses tracked now (the tests' view of the memory bound).
    #[cfg(test)]
    fn tracked_addresses(&self) -> usize {
        lock(&self.addresses).len()
    }
}

/// Frees room for a new address: first everything idle (no failure within the window, nothing
/// in flight); when the table is still full, the tenth of the rest whose windows started
/// earliest and have nothing in flight. Forgetting an old counter gives that address its budget
/// back, but the verification gate still bounds the guessing rate of the whole process, so
/// memory stays bounded without refusing addresses never seen before.
fn make_room(addresses: &mut HashMap<IpAddr, AddressEntry>, max: usize, window: Duration) {
    addresses.retain(|_, entry| !entry.is_idle(window));
    if addresses.len() < max {
        return;
    }
    let mut starts: Vec<Instant> = addresses
        .values()
        .filter(|entry| entry.total.in_flight == 0)
        .map(|entry| entry.window_start)
        .collect();
    if starts.is_empty() {
        return;
    }
    let nth = (max / 10).clamp(1, starts.len()) - 1;
    let (_, cutoff, _) = starts.select_nth_unstable(nth);
    let cutoff = *cutoff;
    addresses.retain(|_, entry| entry.total.in_flight > 0 || entry.window_start > cutoff);
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

    fn settings() -> AuthThrottleSettings {
        AuthThrottleSettings {
            per_user: 2,
            per_address: 5,
            in_flight_per_address: 3,
            window: Duration::from_secs(60),
            exempt: vec!["192.0.2.128/25".parse().unwrap()],
            max_addresses: 1000,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn failures_lock_out_an_address_and_user_until_the_window_ends() {
        let throttle = AuthThrottle::new(settings());
        let client = ip("192.0.2.1");
        throttle.reserve(client, "alice").unwrap().failed();
        throttle.reserve(client, "alice").unwrap().failed();
        assert_eq!(
            throttle.reserve(client, "alice").err(),
            Some(AuthRefusal::LockedOut)
        );
        // Another user behind the same address is not locked out, nor is alice elsewhere.
        throttle.reserve(client, "bob").unwrap().succeeded();
        throttle.reserve(ip("192.0.2.2"), "alice").unwrap().failed();
        tokio::time::advance(Duration::from_secs(61)).await;
        throttle.reserve(client, "alice").unwrap().succeeded();
    }

    #[test]
    fn the_budget_is_taken_before_the_check() {
        let throttle = AuthThrottle::new(settings());
        let client = ip("192.0.2.1");
        let first = throttle.reserve(client, "alice").unwrap();
        let second = throttle.reserve(client, "alice").unwrap();
        assert_eq!(
            throttle.reserve(client, "alice").err(),
            Some(AuthRefusal::LockedOut),
            "two checks in flight spend a budget of two"
        );
        first.succeeded();
        let third = throttle.reserve(client, "alice").unwrap();
        second.not_checked();
        drop(third); // dropped without an outcome: counted as a failure
        throttle.reserve(client, "alice").unwrap().failed();
        assert_eq!(
            throttle.reserve(client, "alice").err(),
            Some(AuthRefusal::LockedOut)
        );
    }

    #[test]
    fn checks_in_flight_per_address_are_capped() {
        let throttle = AuthThrottle::new(settings());
        let client = ip("192.0.2.1");
        let held: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|user| throttle.reserve(client, user).unwrap())
            .collect();
        assert_eq!(
            throttle.reserve(client, "d").err(),
            Some(AuthRefusal::TooManyInFlight)
        );
        for reservation in held {
            reservation.succeeded();
        }
        throttle.reserve(client, "d").unwrap().succeeded();
        assert_eq!(throttle.tracked_addresses(), 0, "nothing left to remember");
    }

    #[test]
    fn the_address_ceiling_stops_user_name_rotation() {
        let throttle = AuthThrottle::new(settings());
        let client = ip("192.0.2.1");
        for n in 0..5 {
            throttle
                .reserve(client, &format!("user{n}"))
                .unwrap()
                .failed();
        }
        assert_eq!(
            throttle.reserve(client, "user99").err(),
            Some(AuthRefusal::LockedOut)
        );
        assert_eq!(
            throttle.reserve(client, "user0").err(),
            Some(AuthRefusal::LockedOut)
        );
    }

    #[test]
    fn exempt_networks_are_never_locked_out() {
        let throttle = AuthThrottle::new(settings());
        for _ in 0..20 {
            throttle
                .reserve(ip("192.0.2.200"), "alice")
                .unwrap()
                .failed();
            // IPv4-mapped IPv6 is the same address.
            throttle
                .reserve(ip("::ffff:192.0.2.200"), "alice")
                .unwrap()
                .failed();
        }
        assert_eq!(throttle.tracked_addresses(), 0);
    }

    #[test]
    fn keys_are_ipv4_addresses_and_ipv6_slash_64s() {
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::1")), ip("::"));
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_budget() {
        let throttle = AuthThrottle::new(settings());
        throttle
            .reserve(ip("2001:db8::1"), "alice")
            .unwrap()
            .failed();
        throttle
            .reserve(ip("2001:db8::2"), "alice")
            .unwrap()
            .failed();
        assert_eq!(
            throttle.reserve(ip("2001:db8::ffff:3"), "alice").err(),
            Some(AuthRefusal::LockedOut)
        );
        throttle
            .reserve(ip("2001:db8:0:1::1"), "alice")
            .unwrap()
            .succeeded();
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_stays_bounded() {
        let throttle = AuthThrottle::new(AuthThrottleSettings {
            max_addresses: 100,
            ..settings()
        });
        for n in 0..1000u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            throttle.reserve(client, "x").unwrap().failed();
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert!(throttle.tracked_addresses() <= 100);
        // The most recent failures are still remembered.
        let last = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + 999));
        throttle.reserve(last, "x").unwrap().failed();
        assert_eq!(
            throttle.reserve(last, "x").err(),
            Some(AuthRefusal::LockedOut)
        );
    }
}
