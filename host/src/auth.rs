//! Who is calling: API tokens for the relay, the admin token for `/admin`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use crate::crypto;
use crate::error::{ErrorKind, GatewayError};
use crate::store::{Db, TokenWithUser, now};

pub const STATUS_ENABLED: i64 = 1;

/// What the relay knows about the caller once the token checked out.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: i64,
    pub user_id: i64,
    /// The group whose channels serve this caller.
    pub group: String,
    /// Models this token may call; `None` means any.
    pub models: Option<HashSet<String>>,
    pub unlimited: bool,
    /// The key's and the user's limits (0: none).
    pub limits: CallerLimits,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CallerLimits {
    pub token_concurrency: u32,
    pub token_rpm: u64,
    pub token_tpm: u64,
    pub user_concurrency: u32,
    pub user_rpm: u64,
    pub user_tpm: u64,
}

impl Caller {
    pub fn may_use(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.contains(model))
    }
}

/// The API key a client sent: `Authorization: Bearer`, or `x-api-key`
/// (Anthropic's SDKs), or `x-goog-api-key` (Google's).
pub fn api_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let key = match v.get(..6) {
            Some(scheme) if scheme.eq_ignore_ascii_case("bearer") => v[6..].trim(),
            _ => v,
        };
        if !key.is_empty() {
            return Some(key);
        }
    }
    ["x-api-key", "x-goog-api-key"].iter().find_map(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
    })
}

/// API keys' database rows, reused for `relay.token_cache_ms` so a call
/// costs no database read to authenticate. Only keys that exist are kept
/// (a flood of made-up keys cannot fill it); every admin change clears it.
pub struct TokenCache {
    db: Db,
    ttl: Duration,
    entries: RwLock<HashMap<String, (Instant, TokenWithUser)>>,
    /// Bumped by every clear: a row read before a clear is not cached
    /// after it.
    generation: AtomicU64,
}

/// Keys kept at most; past it the cache starts over.
const TOKEN_CACHE_MAX: usize = 100_000;

impl TokenCache {
    pub fn new(db: Db, ttl: Duration) -> Self {
        Self {
            db,
            ttl,
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Forget every cached row (after an admin change).
    pub fn clear(&self) {
        if let Ok(mut e) = self.entries.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            e.clear();
        }
    }

    fn cached(&self, digest: &str) -> Option<TokenWithUser> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().ok()?;
        let (at, row) = entries.get(digest)?;
        (at.elapsed() < self.ttl).then(|| row.clone())
    }

    async fn fetch(&self, digest: &str) -> Result<Option<TokenWithUser>, GatewayError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let found = self.db.token_by_digest(digest).await?;
        if let Some(row) = &found
            && !self.ttl.is_zero()
            && let Ok(mut entries) = self.entries.write()
            // An admin change landed while the row was read: it may be stale.
            && self.generation.load(Ordering::SeqCst) == generation
        {
            if entries.len() >= TOKEN_CACHE_MAX {
                entries.clear();
            }
            entries.insert(digest.to_owned(), (Instant::now(), row.clone()));
        }
        Ok(found)
    }
}

/// Authenticate an API key for a relay call from `client_ip`.
///
/// A cached row that lets the call through is trusted; one that would
/// refuse it is read again, so the refusal reflects the database.
pub async fn authenticate(
    tokens: &TokenCache,
    key: Option<&str>,
    client_ip: Option<IpAddr>,
) -> Result<Caller, GatewayError> {
    let key = key.ok_or_else(|| {
        GatewayError::unauthenticated(
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
        )
    })?;
    let digest = crypto::key_digest(key);
    if let Some(row) = tokens.cached(&digest)
        && let Ok(caller) = check(row, client_ip)
    {
        return Ok(caller);
    }
    match tokens.fetch(&digest).await? {
        Some(row) => check(row, client_ip),
        None => Err(GatewayError::unauthenticated(format!(
            "Incorrect API key provided: {}.",
            crypto::key_hint(key)
        ))),
    }
}

/// Whether a key's row admits a call from `client_ip`.
fn check(found: TokenWithUser, client_ip: Option<IpAddr>) -> Result<Caller, GatewayError> {
    let TokenWithUser {
        token,
        user_status,
        user_group,
        user_quota,
        user_max_concurrency,
        user_rpm,
        user_tpm,
        ..
    } = found;
    if token.status != STATUS_ENABLED {
        return Err(GatewayError::unauthenticated(
            "This API key has been disabled.",
        ));
    }
    if token.expires_at.is_some_and(|t| t <= now()) {
        return Err(
            GatewayError::unauthenticated("This API key has expired.").with_code("expired_api_key")
        );
    }
    if user_status != STATUS_ENABLED {
        return Err(GatewayError::forbidden("This account has been disabled."));
    }
    if !token.allowed_ips.trim().is_empty() {
        let allowed = client_ip.is_some_and(|ip| ip_allowed(&token.allowed_ips, ip));
        if !allowed {
            return Err(GatewayError::forbidden(
                "This API key may not be used from this IP address.",
            ));
        }
    }
    let unlimited = token.unlimited_quota == 1;
    if user_quota <= 0 || (!unlimited && token.remain_quota <= 0) {
        return Err(GatewayError::new(
            ErrorKind::InsufficientQuota,
            "You exceeded your current quota; top up the account or raise the key's quota.",
        )
        .with_code("insufficient_quota"));
    }
    let models = crate::channels::split_list(&token.models);
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let limits = CallerLimits {
        token_concurrency: u32::try_from(token.max_concurrency).unwrap_or(0),
        token_rpm: n(token.rpm),
        token_tpm: n(token.tpm),
        user_concurrency: u32::try_from(user_max_concurrency).unwrap_or(0),
        user_rpm: n(user_rpm),
        user_tpm: n(user_tpm),
    };
    Ok(Caller {
        limits,
        token_id: token.id,
        user_id: token.user_id,
        group: if token.group_name.is_empty() {
            user_group
        } else {
            token.group_name
        },
        models: (!models.is_empty()).then(|| models.into_iter().collect()),
        unlimited,
    })
}

/// Whether `ip` matches a comma-separated list of addresses and CIDR ranges.
pub fn ip_allowed(list: &str, ip: IpAddr) -> bool {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| match entry.split_once('/') {
            None => entry.parse::<IpAddr>().is_ok_and(|a| a == ip),
            Some((net, bits)) => match (net.parse::<IpAddr>(), bits.parse::<u32>()) {
                (Ok(net), Ok(bits)) => in_cidr(net, bits, ip),
                _ => false,
            },
        })
}

fn in_cidr(net: IpAddr, bits: u32, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_every_header_style() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-1".parse().unwrap());
        assert_eq!(api_key(&h), Some("sk-1"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "sk-2".parse().unwrap());
        assert_eq!(api_key(&h), Some("sk-2"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(api_key(&h), None);
    }

    #[test]
    fn ip_lists() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ip_allowed("10.0.0.0/8, 1.2.3.4", ip("10.9.8.7")));
        assert!(ip_allowed("10.0.0.0/8, 1.2.3.4", ip("1.2.3.4")));
        assert!(!ip_allowed("10.0.0.0/8", ip("11.0.0.1")));
        assert!(ip_allowed("0.0.0.0/0", ip("8.8.8.8")));
        assert!(ip_allowed("::1", ip("::1")));
        assert!(!ip_allowed("garbage/99", ip("1.1.1.1")));
    }
}
