//! Which web origins may use the broker from a browser: its own (the page it serves, whatever
//! host name it is reached by) and those `--cors-origins` lists. REST applies this through CORS
//! (`http::security`), the socket at the upgrade (`ws`), since browsers send WebSocket upgrades
//! cross-origin without asking.
use actix_web::http::header::{HeaderMap, HOST, ORIGIN};

/// Whether a request carrying these headers comes from an allowed origin. A request without
/// an Origin is not from a browser page (curl, apps, server-to-server) and is allowed.
pub fn allowed(headers: &HeaderMap, listed: &[String]) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    same_host(origin, host) || listed.iter().any(|o| o.eq_ignore_ascii_case(origin))
}

/// `http(s)://<host>` where `<host>` (with its port) is the Host the request was sent to.
fn same_host(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            map.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        map
    }

    #[test]
    fn own_and_listed_origins_are_allowed_and_others_not() {
        let listed = vec!["https://app.example.com".to_owned()];
        assert!(allowed(&headers(None, "sb.example.com"), &listed));
        assert!(allowed(
            &headers(Some("https://sb.example.com"), "sb.example.com"),
            &listed
        ));
        assert!(allowed(
            &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            &[]
        ));
        assert!(allowed(
            &headers(Some("https://app.example.com"), "sb.example.com"),
            &listed
        ));
        assert!(!allowed(
            &headers(Some("https://evil.example"), "sb.example.com"),
            &listed
        ));
        assert!(!allowed(
            &headers(Some("http://127.0.0.1:9999"), "127.0.0.1:8080"),
            &[]
        ));
        assert!(!allowed(&headers(Some("null"), "sb.example.com"), &listed));
        assert!(!allowed(
            &headers(
                Some("https://sb.example.com.evil.example"),
                "sb.example.com"
            ),
            &listed
        ));
    }
}
