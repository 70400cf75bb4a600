//! Secrets at rest and credentials: channel keys are encrypted with
//! AES-256-GCM, API tokens are stored as SHA-256 digests (they are random and
//! long, so a fast hash is the right one), passwords use argon2.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

use crate::config::Secret;

const PREFIX: &str = "v1:";

/// Encrypts and decrypts channel secrets.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(*****)")
    }
}

impl SecretBox {
    /// A box keyed by the configured secret, or by a random key kept in
    /// `<data_dir>/secret.key` (created on first use).
    pub fn load(configured: Option<&Secret>, data_dir: &Path) -> anyhow::Result<Self> {
        let material = match configured {
            Some(s) => s.expose().as_bytes().to_vec(),
            None => load_or_create_key_file(&data_dir.join("secret.key"))?,
        };
        Ok(Self::from_material(&material))
    }

    pub fn from_material(material: &[u8]) -> Self {
        let key = Sha256::digest(material);
        Self {
            cipher: Aes256Gcm::new(&key),
        }
    }

    pub fn encrypt(&self, plaintext: &str) -> anyhow::Result<String> {
        let nonce_bytes: [u8; 12] = rand::rng().random();
        let nonce = Nonce::from_slice(&nonce_bytes);
        let ciphertext = self
            .cipher
            .encrypt(nonce, plaintext.as_bytes())
            .map_err(|_| anyhow!("encrypting a channel secret failed"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", B64.encode(out)))
    }

    pub fn decrypt(&self, stored: &str) -> anyhow::Result<Secret> {
        let raw = stored
            .strip_prefix(PREFIX)
            .ok_or_else(|| anyhow!("stored secret has an unknown format"))?;
        let bytes = B64.decode(raw).context("stored secret is not base64")?;
        if bytes.len() < 12 {
            return Err(anyhow!("stored secret is truncated"));
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| {
                anyhow!("a channel secret cannot be decrypted: is secret_key the one it was stored with?")
            })?;
        Ok(Secret::new(
            String::from_utf8(plain).context("decrypted secret is not UTF-8")?,
        ))
    }
}

fn load_or_create_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(existing) = std::fs::read(path) {
        return Ok(existing);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let key: [u8; 32] = rand::rng().random();
    let encoded = hex::encode(key);
    write_private(path, encoded.as_bytes())?;
    Ok(encoded.into_bytes())
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("creating {}", path.display()))
}

/// A new random string of `len` alphanumeric characters.
pub fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A new API key: `sk-` and 48 random alphanumerics (~285 bits).
pub fn new_api_key() -> String {
    format!("sk-{}", random_string(48))
}

/// How an API key is stored and looked up.
pub fn key_digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A recognisable, harmless form of a key for listings: `sk-abc…wxyz`.
pub fn key_hint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 10 {
        return "*****".to_owned();
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// Compare two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let da = Sha256::digest(a);
    let db = Sha256::digest(b);
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow!("hashing password: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_are_not_plaintext() {
        let b = SecretBox::from_material(b"k");
        let stored = b.encrypt("sk-upstream-123").unwrap();
        assert!(!stored.contains("sk-upstream"));
        assert_eq!(b.decrypt(&stored).unwrap().expose(), "sk-upstream-123");
        assert!(SecretBox::from_material(b"other").decrypt(&stored).is_err());
        assert!(b.decrypt("garbage").is_err());
        assert!(b.decrypt("v1:AAAA").is_err());
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretBox::load(None, dir.path()).unwrap();
        let stored = a.encrypt("x").unwrap();
        let b = SecretBox::load(None, dir.path()).unwrap();
        assert_eq!(b.decrypt(&stored).unwrap().expose(), "x");
    }

    #[test]
    fn api_keys() {
        let k = new_api_key();
        assert!(k.starts_with("sk-") && k.len() == 51);
        assert_eq!(key_digest(&k).len(), 64);
        assert!(!key_hint(&k).contains(&k[6..47]));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
    }

    #[test]
    fn passwords() {
        let h = hash_password("pw").unwrap();
        assert!(verify_password("pw", &h));
        assert!(!verify_password("nope", &h));
    }
}
