//! Stateless nonces for the relay's challenge (401) and stale-nonce (438) answers: the nonce is
//! its issue time and an HMAC of that time and the client's address under a key made at start,
//! so a request without credentials costs the relay no memory at all, and a nonce seen from
//! another address, forged or too old is simply refused.
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a nonce is good for (coturn's default `stale-nonce`).
pub const NONCE_LIFETIME: Duration = Duration::from_secs(600);

/// Hex digits of the issue time, then of the truncated MAC: 24 characters in all.
const TIME_HEX: usize = 8;
const MAC_BYTES: usize = 8;

#[derive(Debug, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours, but too old: the client should retry with the fresh one a 438 carries.
    Stale,
    /// Not one this relay made for this address.
    Invalid,
}

pub struct Nonces {
    key: [u8; 32],
}

impl Nonces {
    pub fn new() -> Self {
        Self {
            key: rand::random(),
        }
    }

    pub fn issue(&self, client: SocketAddr, now_secs: u64) -> String {
        let time = now_secs as u32;
        let mut nonce = format!("{time:08x}");
        for byte in self.mac(client, time) {
            let _ = write!(nonce, "{byte:02x}");
        }
        nonce
    }

    pub fn check(&self, nonce: &str, client: SocketAddr, now_secs: u64) -> NonceCheck {
        if nonce.len() != TIME_HEX + 2 * MAC_BYTES || !nonce.is_ascii() {
            return NonceCheck::Invalid;
        }
        let (time, mac) = nonce.split_at(TIME_HEX);
        let Ok(time) = u32::from_str_radix(time, 16) else {
            return NonceCheck::Invalid;
        };
        let expected = self.mac(client, time);
        let given = (0..MAC_BYTES).map(|i| u8::from_str_radix(&mac[2 * i..2 * i + 2], 16));
        // Every byte is compared, so the time taken says nothing about where they differ.
        let mut differs = 0u8;
        for (want, got) in expected.iter().zip(given) {
            let Ok(got) = got else {
                return NonceCheck::Invalid;
            };
            differs |= want ^ got;
        }
        if differs != 0 {
            return NonceCheck::Invalid;
        }
        let age = (now_secs as u32).wrapping_sub(time);
        if u64::from(age) >= NONCE_LIFETIME.as_secs() {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }

    fn mac(&self, client: SocketAddr, time: u32) -> [u8; MAC_BYTES] {
        let mut out = [0; MAC_BYTES];
        // HMAC takes keys of any length, so this never fails.
        if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            mac.update(&time.to_be_bytes());
            mac.update(client.to_string().as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes()[..MAC_BYTES]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_for_its_address_and_lifetime_only() {
        let nonces = Nonces::new();
        let client: SocketAddr = "198.51.100.4:50000".parse().expect("addr");
        let nonce = nonces.issue(client, 1_700_000_000);
        assert_eq!(nonce.len(), 24);
        assert_eq!(
            nonces.check(&nonce, client, 1_700_000_000),
            NonceCheck::Valid
        );
        assert_eq!(
            nonces.check(&nonce, client, 1_700_000_599),
            NonceCheck::Valid
        );
        assert_eq!(
            nonces.check(&nonce, client, 1_700_000_600),
            NonceCheck::Stale
        );
        let other: SocketAddr = "198.51.100.4:50001".parse().expect("addr");
        assert_eq!(
            nonces.check(&nonce, other, 1_700_000_000),
            NonceCheck::Invalid
        );
        assert_eq!(
            Nonces::new().check(&nonce, client, 1_700_000_000),
            NonceCheck::Invalid,
            "another relay's key"
        );
        let mut forged = nonce.clone();
        forged.replace_range(23.., if nonce.ends_with('0') { "1" } else { "0" });
        assert_eq!(
            nonces.check(&forged, client, 1_700_000_000),
            NonceCheck::Invalid
        );
        for junk in ["", "zz", "ééééééééééééééééééééééé", &"0".repeat(24)] {
            assert_eq!(
                nonces.check(junk, client, 1_700_000_000),
                NonceCheck::Invalid
            );
        }
    }
}
