//! HTTP basic auth against the bcrypt hashes of `basic_auth_users`.
//!
//! bcrypt is slow on purpose (≈ 50 ms at cost 10 here), so:
//! - it runs on tokio's blocking pool, at most [`MAX_BCRYPT_AT_ONCE`] at a
//!   time, never on the two async workers that serve the other requests;
//! - a successful (user, password) is remembered as a keyed SHA-256 digest
//!   of the password (the key is random per process), so a scrape every
//!   second pays one hash, not one bcrypt; a wrong password always pays bcrypt;
//! - an unknown user pays one bcrypt too, against a dummy hash of the same
//!   cost as the configured ones, so timing does not tell which users exist;
//! - every comparison of secrets is constant-time (`subtle`).
//!
//! Nothing here logs a password, a hash or a digest.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// bcrypt verifications running at once (the machine has 2 cores; more
/// would only queue on them and starve the blocking pool).
pub const MAX_BCRYPT_AT_ONCE: usize = 2;

/// How long a request waits for a bcrypt slot before it is refused (503):
/// a flood of wrong passwords then costs bounded CPU and bounded waiting.
pub const BCRYPT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the credentials of one request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No `Authorization` header, not `Basic`, or not decodable.
    Malformed,
    UnknownUser,
    WrongPassword,
    /// Too many verifications waiting: try again later (503).
    Busy,
}

/// The configured users and the cache of passwords seen to be right.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// user → keyed digest of the password last verified for them. At most
    /// one entry per configured user, so the cache is bounded by the file.
    cache: Mutex<HashMap<String, [u8; 32]>>,
    /// Random per process: the digests are useless outside it.
    key: [u8; 32],
    permits: Arc<Semaphore>,
    /// bcrypt of a fixed password at the configured cost, made on first need.
    dummy: Arc<OnceLock<String>>,
    dummy_cost: u32,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl BasicAuth {
    /// `users` maps names to bcrypt hashes (validated by `web_config`).
    pub fn new(users: BTreeMap<String, String>) -> BasicAuth {
        // The unknown user's bcrypt costs what the users' cost (the highest).
        let dummy_cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random source");
        BasicAuth {
            users,
            cache: Mutex::new(HashMap::new()),
            key,
            permits: Arc::new(Semaphore::new(MAX_BCRYPT_AT_ONCE)),
            dummy: Arc::new(OnceLock::new()),
            dummy_cost,
        }
    }

    /// Makes the unknown user's dummy hash now (on the blocking pool), so
    /// that not even the first unknown user answers faster or slower.
    pub fn prepare(&self) {
        let (dummy, cost) = (self.dummy.clone(), self.dummy_cost);
        tokio::task::spawn_blocking(move || {
            dummy.get_or_init(|| make_dummy(cost));
        });
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn digest(&self, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(password);
        h.finalize().into()
    }

    /// Judges one request's `Authorization` header.
    pub async fn check(&self, header: Option<&HeaderValue>) -> Verdict {
        let Some((user, password)) = header.and_then(|h| parse_basic(h.as_bytes())) else {
            return Verdict::Malformed;
        };
        let digest = self.digest(password.as_bytes());
        if let Some(known) = self.cache_get(&user) {
            if ct_eq(&known, &digest) {
                return Verdict::Allowed;
            }
        }
        let hash = self.users.get(&user).cloned();
        let Ok(permit) =
            tokio::time::timeout(BCRYPT_QUEUE_TIMEOUT, self.permits.clone().acquire_owned()).await
        else {
            return Verdict::Busy;
        };
        let dummy = self.dummy.clone();
        let cost = self.dummy_cost;
        let known_user = hash.is_some();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let hash = match hash {
                Some(h) => h,
                None => dummy.get_or_init(|| make_dummy(cost)).clone(),
            };
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        match (known_user, ok) {
            (false, _) => Verdict::UnknownUser,
            (true, false) => Verdict::WrongPassword,
            (true, true) => {
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(user, digest);
                Verdict::Allowed
            }
        }
    }

    fn cache_get(&self, user: &str) -> Option<[u8; 32]> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .copied()
    }
}

fn make_dummy(cost: u32) -> String {
    bcrypt::hash_with_salt(b"rpo-agent dummy", cost, [7u8; 16])
        .map(|p| p.to_string())
        .unwrap_or_default()
}

/// `Basic base64(user:password)` → (user, password). The scheme is
/// case-insensitive (RFC 7617); the password may contain ':'.
pub fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Constant-time equality of two byte strings. Inputs of different lengths
/// are unequal (their length is all that leaks; our digests have one length).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A cheap cost for tests; the figures of cost 10 are in `bcrypt_cost_10`.
    fn users(password: &str) -> BTreeMap<String, String> {
        let salt = [1u8; 16];
        let hash = bcrypt::hash_with_salt(password, 4, salt)
            .unwrap()
            .to_string();
        BTreeMap::from([("prometheus".to_string(), hash)])
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    #[tokio::test]
    async fn right_and_wrong_passwords_and_unknown_users() {
        let a = BasicAuth::new(users("s3cret:with colon"));
        let h = basic("prometheus", "s3cret:with colon");
        assert_eq!(a.check(Some(&h)).await, Verdict::Allowed);
        assert_eq!(
            a.check(Some(&basic("prometheus", "s3cret"))).await,
            Verdict::WrongPassword
        );
        assert_eq!(
            a.check(Some(&basic("grafana", "s3cret:with colon"))).await,
            Verdict::UnknownUser
        );
        // The dummy hash has the users' cost.
        let dummy = a.dummy.get().unwrap();
        assert!(dummy.starts_with("$2b$04$"), "{dummy}");
    }

    #[tokio::test]
    async fn malformed_headers() {
        let a = BasicAuth::new(users("pw"));
        assert_eq!(a.check(None).await, Verdict::Malformed);
        for h in [
            "Bearer abc",
            "Basic",
            "Basic !!!notbase64",
            // "prometheus" without ':'
            "Basic cHJvbWV0aGV1cw==",
            "Basic /w==",
        ] {
            let v = HeaderValue::from_str(h).unwrap();
            assert_eq!(a.check(Some(&v)).await, Verdict::Malformed, "{h}");
        }
        assert_eq!(
            parse_basic(b"basic cHJvbWV0aGV1czpwdw=="),
            Some(("prometheus".into(), "pw".into()))
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"same bytes", b"same bytes"));
        assert!(!ct_eq(b"same bytes", b"same bytez"));
        assert!(!ct_eq(b"Same bytes", b"same bytes"));
        assert!(!ct_eq(b"short", b"shorter"));
        assert!(!ct_eq(b"shorter", b"short"));
        assert!(!ct_eq(b"", b"x"));
    }

    #[tokio::test]
    async fn a_right_password_is_cached_and_a_wrong_one_is_not() {
        let a = BasicAuth::new(users("pw"));
        let h = basic("prometheus", "pw");
        assert_eq!(a.check(Some(&h)).await, Verdict::Allowed);
        let cached = a.cache_get("prometheus").expect("cached after success");
        assert_eq!(cached, a.digest(b"pw"));
        // The cache is what answers now: with the hash gone, only it can.
        let mut b = BasicAuth::new(BTreeMap::new());
        b.key = a.key;
        b.cache.lock().unwrap().insert("prometheus".into(), cached);
        assert_eq!(b.check(Some(&h)).await, Verdict::Allowed);
        // A wrong password is not answered from the cache, nor cached.
        assert_eq!(
            a.check(Some(&basic("prometheus", "px"))).await,
            Verdict::WrongPassword
        );
        assert_eq!(a.cache_get("prometheus"), Some(cached));
        // The digest is keyed per process: another BasicAuth differs.
        assert_ne!(BasicAuth::new(BTreeMap::new()).digest(b"pw"), cached);
    }

    /// The figures quoted in the docs: bcrypt at cost 10 vs a cache hit.
    /// `cargo test -p rpo-exporter --release bcrypt_cost_10 -- --ignored --nocapture`
    #[tokio::test]
    #[ignore]
    async fn bcrypt_cost_10() {
        let hash = bcrypt::hash("pw", 10).unwrap();
        let a = BasicAuth::new(BTreeMap::from([("u".to_string(), hash)]));
        let h = basic("u", "pw");
        let t = Instant::now();
        assert_eq!(a.check(Some(&h)).await, Verdict::Allowed);
        let first = t.elapsed();
        let n = 10_000;
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(a.check(Some(&h)).await, Verdict::Allowed);
        }
        let hit = t.elapsed() / n;
        let t = Instant::now();
        assert_eq!(
            a.check(Some(&basic("nobody", "pw"))).await,
            Verdict::UnknownUser
        );
        let unknown = t.elapsed();
        let t = Instant::now();
        assert_eq!(
            a.check(Some(&basic("u", "px"))).await,
            Verdict::WrongPassword
        );
        let wrong = t.elapsed();
        println!("cost 10: verify {first:?}, cached {hit:?}, unknown user {unknown:?} (incl. making the dummy), wrong password {wrong:?}");
    }
}
