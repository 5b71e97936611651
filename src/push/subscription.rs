//! A browser's push subscription, checked: where to POST (an https push service), and the
//! browser's P-256 key and auth secret the payload is encrypted for (RFC 8291).
use crate::error::{AppError, ErrorCode};
use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use std::net::IpAddr;
use web_push_native::p256::PublicKey;

/// Longest endpoint accepted. The push services' endpoints are a few hundred characters.
pub const MAX_ENDPOINT: usize = 1024;
/// Length of the base64url (unpadded) of a 65-byte uncompressed P-256 point.
pub const P256DH_CHARS: usize = 87;
/// Length of the base64url (unpadded) of a 16-byte auth secret.
pub const AUTH_CHARS: usize = 22;

/// Where and for whom a push is encrypted and sent.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: http::Uri,
    pub p256dh: PublicKey,
    pub auth: [u8; 16],
}

impl Target {
    /// Checks a subscription as a client sent it, or as it was stored.
    /// `allow_insecure`: plain http is accepted to loopback addresses.
    pub fn parse(
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        allow_insecure: bool,
    ) -> Result<Self, AppError> {
        let invalid = |message: &str| AppError::new(ErrorCode::InvalidSubscription, message);
        if endpoint.len() > MAX_ENDPOINT {
            return Err(invalid("the endpoint is too long"));
        }
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|_| invalid("the endpoint is not a URL"))?;
        let host = uri.host().unwrap_or("");
        let authority = uri.authority().map_or("", |a| a.as_str());
        if host.is_empty() || authority.contains('@') || endpoint.contains('#') {
            return Err(invalid(
                "the endpoint must be a URL with a host and no credentials",
            ));
        }
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let loopback =
            host.eq_ignore_ascii_case("localhost") || ip.is_some_and(|ip| ip.is_loopback());
        match uri.scheme_str() {
            Some("https") if !loopback && !ip.is_some_and(is_private) => {}
            Some("http") if allow_insecure && loopback => {}
            _ => {
                return Err(invalid(
                    "the endpoint must be an https URL of a push service",
                ))
            }
        }
        let decode = |text: &str, chars: usize| {
            (text.len() == chars)
                .then(|| BASE64_URL_SAFE_NO_PAD.decode(text).ok())
                .flatten()
        };
        let p256dh = decode(p256dh, P256DH_CHARS)
            .filter(|bytes| bytes.first() == Some(&4))
            .and_then(|bytes| PublicKey::from_sec1_bytes(&bytes).ok())
            .ok_or_else(|| {
                invalid(
                    "keys.p256dh must be the base64url of an uncompressed P-256 point (65 bytes)",
                )
            })?;
        let auth = decode(auth, AUTH_CHARS)
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
            .ok_or_else(|| invalid("keys.auth must be the base64url of 16 bytes"))?;
        Ok(Self {
            endpoint: uri,
            p256dh,
            auth,
        })
    }
}

/// Addresses a push service never has: the broker does not POST into its own networks.
pub(super) fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY";
    const AUTH: &str = "_ordMnz7uTCmrpBTeUV4Bw";

    fn code(endpoint: &str, key: &str, auth: &str, insecure: bool) -> Option<ErrorCode> {
        Target::parse(endpoint, key, auth, insecure)
            .err()
            .map(|e| e.code)
    }

    #[test]
    fn https_push_services_are_accepted() {
        assert_eq!(
            code("https://push.example.com/send/abc", KEY, AUTH, false),
            None
        );
    }

    #[test]
    fn plain_http_only_to_loopback_and_only_when_allowed() {
        let bad = Some(ErrorCode::InvalidSubscription);
        assert_eq!(code("http://127.0.0.1:9/x", KEY, AUTH, false), bad);
        assert_eq!(code("http://127.0.0.1:9/x", KEY, AUTH, true), None);
        assert_eq!(code("http://push.example.com/x", KEY, AUTH, true), bad);
        assert_eq!(code("https://127.0.0.1/x", KEY, AUTH, false), bad);
        assert_eq!(code("https://10.1.2.3/x", KEY, AUTH, false), bad);
        assert_eq!(
            code("https://u:p@push.example.com/x", KEY, AUTH, false),
            bad
        );
        assert_eq!(code("ftp://push.example.com/x", KEY, AUTH, false), bad);
        assert_eq!(code("not a url", KEY, AUTH, false), bad);
    }

    #[test]
    fn keys_must_have_their_sizes() {
        let url = "https://push.example.com/x";
        let bad = Some(ErrorCode::InvalidSubscription);
        assert_eq!(code(url, &KEY[..86], AUTH, false), bad);
        assert_eq!(code(url, AUTH, AUTH, false), bad);
        assert_eq!(code(url, KEY, "AAAA", false), bad);
        assert_eq!(code(url, KEY, &format!("{AUTH}A"), false), bad);
    }
}
