//! SMTP credentials: which SMTP user name belongs to which IAM user, and whether a password is
//! right. Passwords are stored as argon2id PHC strings; checking one costs ~20 ms of CPU and
//! 19 MiB of memory, so it runs on tokio's blocking pool behind a [`VerificationGate`] (about one
//! verification per core, a bounded queue with a deadline), and a successful check is remembered
//! in a bounded cache that can only ever confirm the exact password that was verified. A cached
//! credential never waits for the gate.

mod ses_password;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use ses_password::{is_aws_region, ses_smtp_password};

/// A credential that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("SMTP user name {0:?} is given twice")]
    DuplicateUser(String),
    #[error("password_hash of SMTP user {user:?} is not an argon2 PHC string: {reason}")]
    BadHash { user: String, reason: String },
    #[error(
        "SMTP user {0:?} has the demo password published in the README ({DEMO_PASSWORD:?}), which only the embedded default configuration (serve with no --config) accepts. Fix: give it a password of its own (sesgate hash-password) or remove it."
    )]
    DemoPassword(String),
}

/// The demo user's password, published in the README and `policies/iam.toml`.
pub const DEMO_PASSWORD: &str = "sesgate-demo";

/// The SMTP user names among `logins` whose hash verifies `DEMO_PASSWORD`. One argon2
/// verification per credential (tens of milliseconds each); a hash found clean is remembered
/// for the life of the process, so a reload pays only for new hashes.
pub fn demo_password_users(logins: &[Login]) -> Vec<String> {
    static CLEAN: Mutex<Option<std::collections::HashSet<String>>> = Mutex::new(None);
    let mut found = Vec::new();
    for login in logins {
        let known_clean = CLEAN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|clean| clean.contains(&login.password_hash));
        if known_clean {
            continue;
        }
        let demo = verify_with_memory(
            &mut Vec::new(),
            DEMO_PASSWORD.as_bytes(),
            &login.password_hash,
        );
        if demo {
            found.push(login.smtp_username.clone());
        } else {
            CLEAN
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(Default::default)
                .insert(login.password_hash.clone());
        }
    }
    found
}

/// One SMTP login.
#[derive(Debug, Clone)]
pub struct Login {
    /// The SMTP user name (for SES-style credentials, the access key id).
    pub smtp_username: String,
    /// The IAM user it authenticates as.
    pub iam_user: String,
    /// argon2id PHC string of the password.
    pub password_hash: String,
}

/// How long a verified credential stays cached.
const CACHE_TTL: Duration = Duration::from_secs(15 * 60);
/// The most credentials remembered at once.
const CACHE_CAPACITY: usize = 10_000;

/// Every SMTP login, checked against its hash.
pub struct CredentialStore {
    logins: HashMap<String, Login>,
    cache: VerifiedCache,
    /// Verified against when the user name is unknown, so an unknown name costs what a wrong
    /// password costs and timing does not reveal which names exist.
    decoy_hash: Arc<str>,
}

impl CredentialStore {
    /// Checks that every hash parses and no user name repeats.
    pub fn new(logins: Vec<Login>) -> Result<Self, CredentialError> {
        let mut by_name = HashMap::new();
        for login in logins {
            PasswordHash::new(&login.password_hash).map_err(|e| CredentialError::BadHash {
                user: login.smtp_username.clone(),
                reason: e.to_string(),
            })?;
            if by_name.contains_key(&login.smtp_username) {
                return Err(CredentialError::DuplicateUser(login.smtp_username));
            }
            by_name.insert(login.smtp_username.clone(), login);
        }
        Ok(CredentialStore {
            logins: by_name,
            cache: VerifiedCache::new(),
            decoy_hash: Arc::clone(decoy_hash()),
        })
    }

    /// Whether these credentials are right, and the IAM user they authenticate as. A credential
    /// verified before is answered from the cache at once; any other check runs argon2 through
    /// `gate`, and is answered [`Verification::Busy`] when the gate cannot take it in time.
    pub async fn check(
        &self,
        username: &str,
        password: &str,
        gate: &VerificationGate,
    ) -> Verification {
        let login = self.logins.get(username);
        let hash: Arc<str> = match login {
            Some(login) => login.password_hash.as_str().into(),
            None => Arc::clone(&self.decoy_hash),
        };
        let key = self.cache.key(username, password, &hash);
        if let Some(login) = login
            && self.cache.contains(&key)
        {
            return Verification::Valid {
                iam_user: login.iam_user.clone(),
                ran_argon2: false,
            };
        }
        let verified = match gate.verify(password, hash).await {
            Some(verified) => verified,
            None => return Verification::Busy,
        };
        match login.filter(|_| verified) {
            Some(login) => {
                self.cache.insert(key);
                Verification::Valid {
                    iam_user: login.iam_user.clone(),
                    ran_argon2: true,
                }
            }
            None => Verification::Invalid,
        }
    }
}

/// The outcome of [`CredentialStore::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The password is right; `ran_argon2` is false when the verified cache answered.
    Valid { iam_user: String, ran_argon2: bool },
    /// Wrong password or unknown user name (argon2 ran either way).
    Invalid,
    /// Not checked: too many verifications were waiting, or none could start before the
    /// deadline. Says nothing about the credentials; the client may retry later.
    Busy,
}

impl Verification {
    /// The IAM user, when the credentials were right.
    pub fn iam_user(&self) -> Option<&str> {
        match self {
            Verification::Valid { iam_user, .. } => Some(iam_user),
            _ => None,
        }
    }
}

/// Bounds the argon2 verifications of the whole process: at most `max_running` run at once
/// (each holds 19 MiB and a core for ~20 ms), at most `max_waiting` more wait for a turn, and
/// none waits longer than `max_wait`. Without it, N parallel AUTHs cost N × 19 MiB at once.
/// Shared by every credential store, so a reload does not reset it.
#[derive(Clone)]
pub struct VerificationGate {
    inner: Arc<GateInner>,
}

struct GateInner {
    running: Arc<Semaphore>,
    max_running: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
    started: AtomicU64,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Counts one verification as running while it lives, including on its worker after the
/// awaiting task is gone: the permit and this guard move into the job.
struct Running {
    gate: Arc<GateInner>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts one waiter while it lives, so a cancelled wait frees its queue place.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl VerificationGate {
    /// `max_running` 0 means one per core (`std::thread::available_parallelism`).
    pub fn new(max_running: usize, max_waiting: usize, max_wait: Duration) -> Self {
        let max_running = if max_running == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            max_running
        };
        VerificationGate {
            inner: Arc::new(GateInner {
                running: Arc::new(Semaphore::new(max_running)),
                max_running,
                waiting: AtomicUsize::new(0),
                max_waiting,
                max_wait,
                started: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
                peak_in_flight: AtomicUsize::new(0),
                jobs: start_workers(max_running),
            }),
        }
    }

    /// How many verifications may run at once.
    pub fn max_running(&self) -> usize {
        self.inner.max_running
    }

    /// argon2 verifications started since the gate was made.
    pub fn verifications_started(&self) -> u64 {
        self.inner.started.load(Ordering::SeqCst)
    }

    /// The most verifications that ever ran at once.
    pub fn peak_in_flight(&self) -> usize {
        self.inner.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Whether `password` matches `hash`; `None` when the check could not be run in time.
    async fn verify(&self, password: &str, hash: Arc<str>) -> Option<bool> {
        let gate = &self.inner;
        let permit = match Arc::clone(&gate.running).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Take a queue place first: a full queue refuses at once.
                let queued = gate.waiting.fetch_add(1, Ordering::SeqCst);
                let _waiting = Waiting(&gate.waiting);
                if queued >= gate.max_waiting {
                    return None;
                }
                let acquire = Arc::clone(&gate.running).acquire_owned();
                match tokio::time::timeout(gate.max_wait, acquire).await {
                    Ok(Ok(permit)) => permit,
                    // Timed out, or the semaphore was closed (never done).
                    _ => return None,
                }
            }
        };
        gate.started.fetch_add(1, Ordering::SeqCst);
        let now = gate.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        gate.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        let running = Running {
            gate: Arc::clone(gate),
        };
        let candidate = password.to_owned();
        let (answer, verified) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _permit = permit;
            let _running = running;
            let _ = answer.send(verify_with_memory(memory, candidate.as_bytes(), &hash));
        });
        if gate.jobs.send(job).is_err() {
            return Some(false);
        }
        // A worker that panicked dropped the answer: not verified.
        Some(verified.await.unwrap_or(false))
    }
}

/// One verification, given its worker's argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Whether `password` matches the PHC string `phc`, computing argon2 in `memory` (grown to the
/// hash's memory cost and kept for the next verification). The same computation as
/// `PasswordVerifier::verify_password`, which instead allocates and frees its 19 MiB on every
/// call; glibc then keeps much of that memory per verification (its mmap threshold adapts).
fn verify_with_memory(memory: &mut Vec<Block>, password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_ref()) else {
        return false;
    };
    let Ok(version) = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let mut out = vec![0u8; expected.as_bytes().len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && bool::from(out.ct_eq(expected.as_bytes()))
}

/// Starts the threads that run argon2: as many as may run at once, so the memory each
/// verification takes is reused by the next one on the same thread (and allocator arena)
/// instead of piling up on ever more threads of tokio's blocking pool. They end when the gate
/// is dropped.
fn start_workers(count: usize) -> std::sync::mpsc::Sender<Job> {
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    for n in 0..count {
        let queue = Arc::clone(&queue);
        std::thread::Builder::new()
            .name(format!("sesgate-argon2-{n}"))
            .spawn(move || {
                let mut memory = Vec::new();
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(job) = next else { return };
                    // A panic in one verification must not take the worker with it.
                    let run = std::panic::AssertUnwindSafe(|| job(&mut memory));
                    let _ = std::panic::catch_unwind(run);
                }
            })
            .expect("the operating system starts a thread");
    }
    jobs
}

/// One decoy hash per process: computing it costs a full argon2 run, which every reload would
/// otherwise pay again.
fn decoy_hash() -> &'static Arc<str> {
    static DECOY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("sesgate decoy password").into())
}

/// The argon2id PHC string of `password` (default parameters: m=19456 KiB, t=2, p=1).
pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

type HmacSha256 = Hmac<Sha256>;

/// Remembers verified (user name, password, stored hash) triples by their HMAC under a key that
/// lives only in this process. A different password, user or stored hash gives a different MAC,
/// so a cache hit is proof that exactly this password was verified against exactly this hash.
struct VerifiedCache {
    mac_key: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl VerifiedCache {
    fn new() -> Self {
        let mut mac_key = [0u8; 32];
        getrandom::fill(&mut mac_key).expect("the operating system provides random bytes");
        VerifiedCache {
            mac_key,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, username: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.mac_key)
            .expect("HMAC takes any key length");
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [username, password, hash] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // The key is an HMAC under a per-process secret: its bytes, and how long comparing them
        // takes, tell an attacker nothing, so the map's own lookup is the whole check.
        entries.get(key).is_some_and(|at| at.elapsed() < CACHE_TTL)
    }

    fn insert(&self, key: [u8; 32]) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_CAPACITY {
            entries.retain(|_, at| at.elapsed() < CACHE_TTL);
            if entries.len() >= CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, Instant::now());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> CredentialStore {
        CredentialStore::new(vec![Login {
            smtp_username: "AKIAEXAMPLE".into(),
            iam_user: "billing-app".into(),
            password_hash: hash_password("right"),
        }])
        .unwrap()
    }

    fn gate() -> VerificationGate {
        VerificationGate::new(1, 8, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn checks_and_caches_only_the_right_password() {
        let store = store();
        let gate = gate();
        let check = |user, password| {
            let (store, gate) = (&store, &gate);
            async move { store.check(user, password, gate).await }
        };
        assert_eq!(check("AKIAEXAMPLE", "wrong").await, Verification::Invalid);
        assert_eq!(store.cache.len(), 0, "failures are never cached");
        assert_eq!(
            check("AKIAEXAMPLE", "right").await,
            Verification::Valid {
                iam_user: "billing-app".into(),
                ran_argon2: true
            }
        );
        assert_eq!(store.cache.len(), 1);
        assert_eq!(gate.verifications_started(), 2);
        assert_eq!(
            check("AKIAEXAMPLE", "right").await,
            Verification::Valid {
                iam_user: "billing-app".into(),
                ran_argon2: false
            },
            "a cached credential does not run argon2"
        );
        assert_eq!(gate.verifications_started(), 2);
        assert_eq!(
            check("AKIAEXAMPLE", "wrong").await,
            Verification::Invalid,
            "a cached user with a wrong password"
        );
        assert_eq!(check("AKIAEXAMPLE", "righ").await, Verification::Invalid);
        assert_eq!(check("NOBODY", "right").await, Verification::Invalid);
        assert_eq!(
            gate.verifications_started(),
            5,
            "unknown users cost argon2 too"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_gate_bounds_running_and_waiting_verifications() {
        let store = Arc::new(store());
        // One runs, two wait; the rest are refused at once without running argon2.
        let gate = VerificationGate::new(1, 2, Duration::from_secs(30));
        let checks: Vec<_> = (0..10)
            .map(|_| {
                let (store, gate) = (Arc::clone(&store), gate.clone());
                tokio::spawn(async move { store.check("AKIAEXAMPLE", "wrong", &gate).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for check in checks {
            outcomes.push(check.await.unwrap());
        }
        let busy = outcomes
            .iter()
            .filter(|o| **o == Verification::Busy)
            .count();
        let invalid = outcomes
            .iter()
            .filter(|o| **o == Verification::Invalid)
            .count();
        assert_eq!(busy + invalid, 10);
        assert!((1..=3).contains(&invalid), "{outcomes:?}");
        assert_eq!(gate.verifications_started(), invalid as u64);
        assert_eq!(gate.peak_in_flight(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_gives_up_at_the_deadline_and_a_cached_login_never_waits() {
        let store = Arc::new(store());
        let gate = VerificationGate::new(1, 100, Duration::from_millis(1));
        assert!(
            store
                .check("AKIAEXAMPLE", "right", &gate)
                .await
                .iam_user()
                .is_some()
        );
        let checks: Vec<_> = (0..6)
            .map(|_| {
                let (store, gate) = (Arc::clone(&store), gate.clone());
                tokio::spawn(async move { store.check("AKIAEXAMPLE", "wrong", &gate).await })
            })
            .collect();
        // While the gate is taken, the cached credential is still answered.
        assert_eq!(
            store.check("AKIAEXAMPLE", "right", &gate).await,
            Verification::Valid {
                iam_user: "billing-app".into(),
                ran_argon2: false
            }
        );
        let mut busy = 0;
        for check in checks {
            busy += usize::from(check.await.unwrap() == Verification::Busy);
        }
        // argon2 takes far longer than 1 ms: whoever waited gave up.
        assert!(busy >= 1, "no waiter timed out");
        assert_eq!(gate.peak_in_flight(), 1);
    }

    #[test]
    fn reused_memory_verifies_as_argon2_does() {
        use argon2::password_hash::PasswordVerifier;
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            Params::new(32, 3, 2, Some(16)).unwrap(),
        );
        let hashes = [
            hash_password("right"),
            cheap.hash_password(b"right").unwrap().to_string(),
            argon2i.hash_password(b"right").unwrap().to_string(),
            hash_password("right"),
        ];
        let mut memory = Vec::new();
        for hash in &hashes {
            let parsed = PasswordHash::new(hash).unwrap();
            for password in ["right", "wrong", "righ", ""] {
                let reference = Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok();
                assert_eq!(
                    verify_with_memory(&mut memory, password.as_bytes(), hash),
                    reference,
                    "{hash} {password:?}"
                );
            }
            assert!(verify_with_memory(&mut memory, b"right", hash));
        }
        assert!(!verify_with_memory(&mut memory, b"right", "not a hash"));
    }

    #[test]
    fn zero_means_one_verification_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(
            VerificationGate::new(0, 1, Duration::from_secs(1)).max_running(),
            cores
        );
    }

    #[test]
    fn cache_keys_bind_user_password_and_hash() {
        let cache = VerifiedCache::new();
        let key = cache.key("ab", "c", "h");
        assert_ne!(key, cache.key("a", "bc", "h"));
        assert_ne!(key, cache.key("ab", "c", "h2"));
        assert_eq!(key, cache.key("ab", "c", "h"));
        assert_ne!(
            key,
            VerifiedCache::new().key("ab", "c", "h"),
            "keys are per process"
        );
    }

    #[test]
    fn finds_the_demo_password() {
        let login = |user: &str, password: &str| Login {
            smtp_username: user.into(),
            iam_user: "u".into(),
            password_hash: hash_password(password),
        };
        let logins = [
            login("mine", "not the demo"),
            login("copied", DEMO_PASSWORD),
        ];
        assert_eq!(demo_password_users(&logins), ["copied"]);
        assert_eq!(
            demo_password_users(&logins),
            ["copied"],
            "never cached as clean"
        );
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/iam.toml"))
                .unwrap();
        let shipped =
            crate::config::iam::IamFile::parse(std::path::Path::new("iam.toml"), &shipped).unwrap();
        assert_eq!(demo_password_users(&shipped.logins()), ["demo"]);
    }

    #[test]
    fn load_errors() {
        let login = |user: &str, hash: &str| Login {
            smtp_username: user.into(),
            iam_user: "u".into(),
            password_hash: hash.into(),
        };
        let err = CredentialStore::new(vec![login("A", "plaintext")])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not an argon2 PHC string"), "{err}");
        let hash = hash_password("x");
        let err = CredentialStore::new(vec![login("A", &hash), login("A", &hash)])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"A\" is given twice"), "{err}");
    }
}
