//! SMTP credentials: which SMTP user name belongs to which IAM user, and whether a password is
//! right. Passwords are stored as argon2id PHC strings; checking one costs ~20 ms of CPU, so it
//! runs on tokio's blocking pool, and a successful check is remembered in a bounded cache that
//! can only ever confirm the exact password that was verified.

mod ses_password;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

pub use ses_password::ses_smtp_password;

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
        let demo = PasswordHash::new(&login.password_hash).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(DEMO_PASSWORD.as_bytes(), &hash)
                .is_ok()
        });
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

    /// The IAM user these credentials authenticate as, or `None`.
    pub async fn check(&self, username: &str, password: &str) -> Option<String> {
        let login = self.logins.get(username);
        let hash: Arc<str> = match login {
            Some(login) => login.password_hash.as_str().into(),
            None => Arc::clone(&self.decoy_hash),
        };
        let key = self.cache.key(username, password, &hash);
        if let Some(login) = login
            && self.cache.contains(&key)
        {
            return Some(login.iam_user.clone());
        }
        let candidate = password.to_owned();
        let verify_hash = Arc::clone(&hash);
        let verified = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&verify_hash).ok()?;
            Argon2::default()
                .verify_password(candidate.as_bytes(), &parsed)
                .ok()
        })
        .await
        .ok()
        .flatten()
        .is_some();
        let login = login.filter(|_| verified)?;
        self.cache.insert(key);
        Some(login.iam_user.clone())
    }
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
        entries
            .get_key_value(key)
            .is_some_and(|(stored, at)| bool::from(stored.ct_eq(key)) && at.elapsed() < CACHE_TTL)
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

    #[tokio::test]
    async fn checks_and_caches_only_the_right_password() {
        let store = store();
        assert_eq!(store.check("AKIAEXAMPLE", "wrong").await, None);
        assert_eq!(store.cache.len(), 0, "failures are never cached");
        assert_eq!(
            store.check("AKIAEXAMPLE", "right").await.as_deref(),
            Some("billing-app")
        );
        assert_eq!(store.cache.len(), 1);
        assert_eq!(
            store.check("AKIAEXAMPLE", "right").await.as_deref(),
            Some("billing-app")
        );
        assert_eq!(
            store.check("AKIAEXAMPLE", "wrong").await,
            None,
            "a cached user with a wrong password"
        );
        assert_eq!(store.check("AKIAEXAMPLE", "righ").await, None);
        assert_eq!(store.check("NOBODY", "right").await, None);
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
