//! Who a request comes from. The peer address of the connection, unless that peer is one of
//! the reverse proxies named by `--trusted-proxies`: then the rightmost address of
//! X-Forwarded-For that is not itself a trusted proxy (the leftmost entries are whatever the
//! client wrote and prove nothing). With no trusted proxies, X-Forwarded-For is ignored, so
//! behind a proxy everyone shares the proxy's address.
use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;
use ipnet::IpNet;
use std::net::IpAddr;

pub fn of(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    resolve(req.peer_addr().map(|a| a.ip()), req.headers(), trusted)
}

fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            return Some(peer);
        };
        for hop in value.split(',') {
            match hop.trim().parse() {
                Ok(ip) => chain.push(ip),
                // A hop that is not an address: nothing to its left can be believed.
                Err(_) => chain.clear(),
            }
        }
    }
    let mut client = peer;
    for hop in chain.into_iter().rev() {
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let spoofed = headers(&["1.1.1.1"]);
        assert_eq!(
            resolve(Some(ip("203.0.113.9")), &spoofed, &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            resolve(Some(ip("203.0.113.9")), &spoofed, &[]),
            Some(ip("203.0.113.9"))
        );
        // Behind the proxy: the rightmost address the proxies did not add.
        let chain = headers(&["1.1.1.1, 198.51.100.4", "10.0.0.7"]);
        assert_eq!(
            resolve(Some(ip("10.0.0.2")), &chain, &trusted),
            Some(ip("198.51.100.4"))
        );
        // Every hop trusted: the leftmost.
        let inner = headers(&["10.1.1.1"]);
        assert_eq!(
            resolve(Some(ip("10.0.0.2")), &inner, &trusted),
            Some(ip("10.1.1.1"))
        );
        // No header: the proxy itself; garbage: nothing left of it counts.
        assert_eq!(
            resolve(Some(ip("10.0.0.2")), &headers(&[]), &trusted),
            Some(ip("10.0.0.2"))
        );
        let garbage = headers(&["198.51.100.4, nonsense"]);
        assert_eq!(
            resolve(Some(ip("10.0.0.2")), &garbage, &trusted),
            Some(ip("10.0.0.2"))
        );
    }
}
