//! Signed, expiring acknowledge links for messages (Slack): whoever holds
//! the link may acknowledge that one incident until it expires, without the
//! API's bearer token.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Makes and checks acknowledge links.
#[derive(Clone)]
pub struct AckLinks {
    public_url: String,
    key: Vec<u8>,
    ttl: chrono::Duration,
}

impl std::fmt::Debug for AckLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("AckLinks")
            .field("public_url", &self.public_url)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AckLinks {
    pub fn new(public_url: &str, key: &[u8], ttl: std::time::Duration) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            key: key.to_vec(),
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1)),
        }
    }

    fn signature(&self, id: &str, expires: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{id}:{expires}").as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A link acknowledging incident `id`, valid for the configured time.
    pub fn url(&self, id: &str) -> String {
        self.url_at(id, Utc::now())
    }

    pub fn url_at(&self, id: &str, now: DateTime<Utc>) -> String {
        let expires = (now + self.ttl).timestamp();
        format!(
            "{}/ack/{id}?expires={expires}&sig={}",
            self.public_url,
            self.signature(id, expires)
        )
    }

    /// Whether `sig` signs `id` until `expires` and that is still ahead of `now`.
    pub fn verify(&self, id: &str, expires: i64, sig: &str, now: DateTime<Utc>) -> bool {
        if now.timestamp() > expires {
            return false;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{id}:{expires}").as_bytes());
        let Some(bytes) = hex_bytes(sig) else {
            return false;
        };
        // Constant-time comparison.
        mac.verify_slice(&bytes).is_ok()
    }
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire_and_only_for_their_incident() {
        let links = AckLinks::new(
            "http://klaxon.example/",
            b"secret",
            std::time::Duration::from_secs(3600),
        );
        let now = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .to_utc();
        let url = links.url_at("abc123", now);
        let query = url.split_once('?').unwrap().1;
        assert!(
            url.starts_with("http://klaxon.example/ack/abc123?"),
            "{url}"
        );
        let mut expires = 0;
        let mut sig = "";
        for pair in query.split('&') {
            match pair.split_once('=').unwrap() {
                ("expires", v) => expires = v.parse().unwrap(),
                ("sig", v) => sig = v,
                _ => {}
            }
        }
        assert!(links.verify("abc123", expires, sig, now));
        assert!(
            !links.verify("abc124", expires, sig, now),
            "another incident"
        );
        assert!(
            !links.verify("abc123", expires + 1, sig, now),
            "a longer life"
        );
        assert!(
            !links.verify("abc123", expires, sig, now + chrono::Duration::hours(2)),
            "expired"
        );
        let other = AckLinks::new(
            "http://klaxon.example/",
            b"other",
            std::time::Duration::from_secs(3600),
        );
        assert!(!other.verify("abc123", expires, sig, now), "another key");
    }
}
