//! Vertex AI credentials: a channel's Google service-account key turned into
//! the OAuth access token the `gemini` adapter sends as a bearer token.
//!
//! A `vertex` / `vertex-ai` channel's key is a service-account JSON key
//! (`client_email`, `private_key` as PKCS#8 PEM, `private_key_id`,
//! `project_id`, `token_uri`). Before a call, the host signs an RS256 JWT
//! with it (`iss` = the account, `scope` = cloud-platform, `aud` = the
//! token URI, valid one hour) and exchanges it at the token URI
//! (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`) for an access
//! token, which is cached per channel and key until five minutes before it
//! expires. Callers needing the same token at once share one exchange; a
//! failed exchange's error is answered for 5 s before the key is traded
//! again. The adapter receives the access token as
//! the channel's key and the project in the channel option `project` (from
//! the key's `project_id` when the operator set none): it never sees the
//! private key.
//!
//! A channel's stored secret may hold several keys: one JSON object after
//! the other (pretty-printed or not). Neither the private key nor a token
//! ever reaches a log line or an error message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::adapters::ChannelInfo;
use crate::channels::Channel;
use crate::config::Secret;
use crate::error::{ErrorKind, GatewayError};

/// Channel types whose key is a service account.
pub const KINDS: &[&str] = &["vertex", "vertex-ai"];
/// The OAuth scope Vertex AI calls need.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, for keys that name none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The grant type of a JWT bearer assertion (RFC 7523).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long a signed assertion is valid (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// A cached token is replaced this long before it expires.
const SAFETY_MARGIN: Duration = Duration::from_secs(300);
/// The longest a token exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// A token refused by the upstream is traded again at most this often (a
/// project missing a role answers 403 to every call; that must not become
/// one exchange per call).
const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// How long a failed exchange's error is answered before the key is traded
/// again.
const FAILURE_KEPT: Duration = Duration::from_secs(5);

/// Whether channels of `kind` use a service-account key.
pub fn is_vertex(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// The keys of a stored secret: each JSON object in it (one after the
/// other, pretty-printed or not). A secret that is not such a sequence is
/// one key, refused with a clear message when it is used.
pub fn split_keys(secret: &str) -> Vec<Secret> {
    let text = secret.trim();
    if text.is_empty() {
        return Vec::new();
    }
    let mut keys = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    loop {
        match stream.next() {
            None => break,
            Some(Ok(_)) => {
                let end = stream.byte_offset();
                let key = text.get(start..end).unwrap_or_default().trim();
                if !key.starts_with('{') {
                    return vec![Secret::new(text)];
                }
                keys.push(Secret::new(key));
                start = end;
            }
            Some(Err(_)) => return vec![Secret::new(text)],
        }
    }
    keys
}

/// A parsed service-account key. Not `Debug`: it holds the private key.
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub project_id: Option<String>,
    pub token_uri: String,
    key_pair: RsaKeyPair,
}

impl ServiceAccount {
    /// Read a service-account JSON key. The error says what is wrong without
    /// quoting the key.
    pub fn parse(key: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(key.trim())
            .map_err(|_| "the key is not a service-account JSON key".to_owned())?;
        let object = value
            .as_object()
            .ok_or("the key is not a service-account JSON key (not a JSON object)")?;
        if let Some(kind) = object.get("type").and_then(Value::as_str)
            && kind != "service_account"
        {
            return Err(format!(
                "the key is of type `{}`, not `service_account`",
                printable(kind)
            ));
        }
        let text = |field: &str| {
            object
                .get(field)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let client_email =
            text("client_email").ok_or("the service-account key has no `client_email`")?;
        let pem = text("private_key").ok_or("the service-account key has no `private_key`")?;
        let token_uri = text("token_uri").unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        if url::Url::parse(&token_uri)
            .map(|u| u.scheme() != "https" && u.scheme() != "http")
            .unwrap_or(true)
        {
            return Err("the service-account key's `token_uri` is not an http(s) URL".to_owned());
        }
        let der = pem_to_der(&pem)
            .ok_or("the service-account key's `private_key` is not a PEM `PRIVATE KEY` (PKCS#8)")?;
        let key_pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| {
            "the service-account key's `private_key` is not a valid PKCS#8 RSA key".to_owned()
        })?;
        Ok(Self {
            client_email,
            private_key_id: text("private_key_id"),
            project_id: text("project_id"),
            token_uri,
            key_pair,
        })
    }

    /// A signed JWT asking for a cloud-platform token, issued at `iat`
    /// (seconds since the epoch).
    pub fn assertion(&self, iat: u64) -> Result<String, String> {
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the token request failed".to_owned())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The DER inside a `-----BEGIN PRIVATE KEY-----` PEM block.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    // JSON keys carry real newlines; keys pasted with literal `\n` too.
    let pem = pem.replace("\\n", "\n");
    let body = pem
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)?
        .split("-----END PRIVATE KEY-----")
        .next()?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).ok().filter(|d| !d.is_empty())
}

/// A short, printable excerpt of a value for an error message.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_-.".contains(*c))
        .take(40)
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Cached {
    token: Secret,
    /// The key's `project_id`, read when the token was fetched.
    project_id: Option<String>,
    fetched_at: Instant,
    refresh_at: Instant,
}

/// One (channel, key)'s token, or its last failed exchange; its lock makes
/// concurrent callers share one exchange.
type Slot = Arc<tokio::sync::Mutex<SlotState>>;

#[derive(Default)]
struct SlotState {
    cached: Option<Cached>,
    /// The last exchange failed: callers get its error until then instead
    /// of each trying again in turn (each waiting up to the exchange
    /// timeout when the token endpoint hangs).
    failed: Option<(GatewayError, Instant)>,
}

/// Access tokens by (channel id, SHA-256 of the key). Lives in the app
/// state.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<(i64, [u8; 32]), Slot>>,
    exchanges: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("exchanges", &self.exchanges())
            .finish()
    }
}

impl TokenCache {
    /// Token exchanges made so far (for tests and the monitor).
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drop the tokens cached for `channel_id` that are older than
    /// [`REFETCH_AFTER`]: the upstream refused one (revoked, or the account
    /// lost its role), so a later call trades the key again instead of
    /// failing until the token expires.
    pub fn forget(&self, channel_id: i64) {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots.retain(|(id, _), slot| {
            if *id != channel_id {
                return true;
            }
            // A slot being filled right now holds a fresh token.
            // So does one whose exchange just failed: its failure is
            // answered for a while (this is how a refused exchange ends up
            // here too).
            match slot.try_lock() {
                Ok(state) => {
                    state
                        .cached
                        .as_ref()
                        .is_some_and(|c| c.fetched_at.elapsed() < REFETCH_AFTER)
                        || state
                            .failed
                            .as_ref()
                            .is_some_and(|(_, until)| Instant::now() < *until)
                }
                Err(_) => true,
            }
        });
    }

    fn slot(&self, channel_id: i64, key: &str) -> Slot {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots.entry((channel_id, digest)).or_default().clone()
    }

    /// A valid access token for channel `channel`'s service-account key
    /// `key`, and the key's `project_id`: from the cache, or from a new
    /// exchange (the key is only parsed and its RSA key checked then).
    pub async fn token(
        &self,
        http: &reqwest::Client,
        channel: &Channel,
        key: &str,
    ) -> Result<(String, Option<String>), GatewayError> {
        let slot = self.slot(channel.id, key);
        let mut state = slot.lock().await;
        if let Some(c) = state.cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok((c.token.expose().to_owned(), c.project_id.clone()));
        }
        if let Some((error, until)) = &state.failed
            && Instant::now() < *until
        {
            return Err(error.clone());
        }
        state.cached = None;
        state.failed = None;
        let fetched = match ServiceAccount::parse(key) {
            Ok(account) => {
                self.exchanges
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                exchange(http, channel, &account)
                    .await
                    .map(|(token, lifetime)| (token, lifetime, account.project_id))
            }
            Err(e) => Err(misconfigured(channel, &e)),
        };
        let (token, lifetime, project_id) = match fetched {
            Ok(fetched) => fetched,
            Err(e) => {
                state.failed = Some((e.clone(), Instant::now() + FAILURE_KEPT));
                return Err(e);
            }
        };
        let value = token.expose().to_owned();
        let now = Instant::now();
        state.cached = Some(Cached {
            token,
            project_id: project_id.clone(),
            fetched_at: now,
            refresh_at: now + lifetime.saturating_sub(SAFETY_MARGIN),
        });
        Ok((value, project_id))
    }
}

/// Trade a signed assertion for an access token and its lifetime.
async fn exchange(
    http: &reqwest::Client,
    channel: &Channel,
    account: &ServiceAccount,
) -> Result<(Secret, Duration), GatewayError> {
    let assertion = account
        .assertion(unix_now())
        .map_err(|e| misconfigured(channel, &e))?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", GRANT_TYPE)
        .append_pair("assertion", &assertion)
        .finish();
    let response = http
        .post(&account.token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form)
        .timeout(EXCHANGE_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(
                channel = channel.id,
                timeout = e.is_timeout(),
                connect = e.is_connect(),
                "Vertex AI token endpoint unreachable"
            );
            GatewayError::new(
                ErrorKind::Upstream,
                format!(
                    "Channel {}: Google's token endpoint could not be reached to authorize its service account.",
                    channel.id
                ),
            )
            .with_code("upstream_unreachable")
            .retryable(true)
        })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        // OAuth errors are `{"error": "invalid_grant", "error_description": …}`;
        // only the (short, fixed) error code goes into the answer.
        let code = body
            .get("error")
            .and_then(Value::as_str)
            .map(printable)
            .filter(|c| !c.is_empty());
        tracing::warn!(
            channel = channel.id,
            status = status.as_u16(),
            error = code.as_deref().unwrap_or(""),
            "Vertex AI token exchange refused"
        );
        let why = code.map(|c| format!(" ({c})")).unwrap_or_default();
        return Err(GatewayError::new(
            ErrorKind::Upstream,
            format!(
                "The upstream rejected the credentials of channel {}: Google's token endpoint refused its service account{why}.",
                channel.id
            ),
        )
        .with_code("upstream_auth_failed")
        .retryable(true));
    }
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Upstream,
                format!(
                    "Channel {}: Google's token endpoint answered without an access token.",
                    channel.id
                ),
            )
            .retryable(true)
        })?;
    let lifetime = body
        .get("expires_in")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(ASSERTION_LIFETIME_SECS);
    Ok((Secret::new(token), Duration::from_secs(lifetime)))
}

/// A channel whose key cannot be used: the operator's to fix; another
/// channel may serve the call meanwhile.
fn misconfigured(channel: &Channel, why: &str) -> GatewayError {
    tracing::warn!(channel = channel.id, why, "Vertex AI channel key unusable");
    GatewayError::new(
        ErrorKind::Upstream,
        format!(
            "Channel {} (Vertex AI) cannot be used: {why}. Its key must be a Google service-account JSON key.",
            channel.id
        ),
    )
    .with_code("invalid_channel_key")
    .retryable(true)
}

/// The adapter's view of `channel` with key `key_index`. For a Vertex AI
/// channel the key is replaced with an access token and the `project`
/// option is filled in from the key when the operator set none; other
/// channels get their key as it is.
pub async fn channel_info(
    app: &AppState,
    channel: &Channel,
    key_index: usize,
) -> Result<ChannelInfo, GatewayError> {
    let key = channel
        .keys
        .get(key_index)
        .map(|k| k.expose())
        .unwrap_or_default();
    let mut info = ChannelInfo {
        kind: channel.kind.clone(),
        base_url: channel.base_url.clone(),
        api_key: key.to_owned(),
        options: channel.options.clone(),
    };
    if !is_vertex(&channel.kind) {
        return Ok(info);
    }
    let (token, project_id) = app.vertex_tokens.token(&app.http, channel, key).await?;
    let has_project = info
        .options
        .iter()
        .any(|(k, v)| k == "project" && !v.trim().is_empty());
    if !has_project && let Some(project) = project_id {
        info.options.push(("project".to_owned(), project));
    }
    info.api_key = token;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_json_objects() {
        let one = "{\n  \"type\": \"service_account\",\n  \"client_email\": \"a@b\"\n}";
        let keys = split_keys(&format!("{one}\n{one}\n"));
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].expose(), one);
        assert_eq!(split_keys(one).len(), 1);
        assert_eq!(split_keys("  ").len(), 0);
        let broken = split_keys("not json\nat all");
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].expose(), "not json\nat all");
        assert_eq!(split_keys("[1] {}").len(), 1);
    }

    #[test]
    fn bad_keys_are_named_without_being_quoted() {
        for (key, expected) in [
            ("sk-not-json", "not a service-account JSON key"),
            ("[1]", "not a JSON object"),
            (r#"{"type":"authorized_user"}"#, "authorized_user"),
            (r#"{"private_key":"x"}"#, "client_email"),
            (r#"{"client_email":"a@b"}"#, "private_key"),
            (
                r#"{"client_email":"a@b","private_key":"SECRETSECRET"}"#,
                "not a PEM",
            ),
            (
                r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n-----END PRIVATE KEY-----\n"}"#,
                "not a valid PKCS#8 RSA key",
            ),
            (
                r#"{"client_email":"a@b","private_key":"x","token_uri":"ftp://x"}"#,
                "token_uri",
            ),
        ] {
            let Err(e) = ServiceAccount::parse(key) else {
                panic!("{key} parsed");
            };
            assert!(e.contains(expected), "{key}: {e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
    }
}
