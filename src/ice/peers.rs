//! Which peers the relay may send to. An open relay would let anyone on the Internet reach the
//! broker's host and its private networks through it, so by default the relay refuses peers in
//! the ranges coturn's `no-loopback-peers`, `no-multicast-peers` and `denied-peer-ip` cover:
//! loopback, unspecified, private, link-local, shared (CGNAT), multicast, broadcast and
//! documentation addresses, and the broker's own listening sockets. `--relay-allowed-peers`
//! opens ranges again (it wins over the defaults and over `--relay-denied-peers`, which adds
//! ranges). One exception is built in: a relay that itself listens on a loopback address is
//! reachable only from this machine, so it may relay to loopback (the zero-config default).
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone)]
pub struct PeerPolicy {
    allowed: Vec<IpNet>,
    denied: Vec<IpNet>,
    /// The broker's own sockets (HTTP and the relay): never a peer, whatever the lists say.
    own: Vec<SocketAddr>,
    loopback_relay: bool,
}

impl PeerPolicy {
    pub fn new(
        allowed: Vec<IpNet>,
        denied: Vec<IpNet>,
        own: Vec<SocketAddr>,
        relay_ip: IpAddr,
    ) -> Self {
        Self {
            allowed,
            denied,
            own,
            loopback_relay: relay_ip.is_loopback(),
        }
    }

    /// Whether the relay may send to (and take data from) `peer`.
    pub fn allows(&self, peer: SocketAddr) -> bool {
        let ip = canonical(peer.ip());
        let own = self.own.iter().any(|a| {
            a.port() == peer.port() && (canonical(a.ip()) == ip || a.ip().is_unspecified())
        });
        if own {
            return false;
        }
        self.allows_ip(ip)
    }

    /// Whether `ip` may be a peer at all (permissions name addresses without ports).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        if self.denied.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        if ip.is_loopback() {
            return self.loopback_relay;
        }
        !denied_by_default(ip)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is judged as the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn denied_by_default(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => denied_v4(v4),
        IpAddr::V6(v6) => denied_v6(v6),
    }
}

fn denied_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        // "This network" (0/8), shared address space for CGNAT (100.64/10), IETF protocol
        // assignments (192.0.0/24), benchmarking (198.18/15), reserved (240/4).
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

fn denied_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10, deprecated).
        || (first & 0xFE00) == 0xFC00
        || (first & 0xFFC0) == 0xFE80
        || (first & 0xFFC0) == 0xFEC0
        // Documentation (2001:db8::/32), and IPv4-compatible/translated forms that could smuggle
        // a private IPv4 address: 64:ff9b::/96 and ::/96.
        || (first == 0x2001 && ip.segments()[1] == 0x0DB8)
        || (first == 0x0064 && ip.segments()[1] == 0xFF9B)
        || ip.segments()[..6].iter().all(|s| *s == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn public_relay() -> PeerPolicy {
        PeerPolicy::new(
            vec![],
            vec![],
            vec![addr("203.0.113.7:8080")],
            "203.0.113.7".parse().expect("ip"),
        )
    }

    #[test]
    fn the_host_and_its_networks_are_refused_by_default() {
        let policy = public_relay();
        for peer in [
            "127.0.0.1:80",
            "127.9.9.9:80",
            "0.0.0.0:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "172.31.255.255:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "100.127.255.255:80",
            "224.0.0.1:80",
            "239.255.255.250:1900",
            "255.255.255.255:80",
            "[::1]:80",
            "[::]:80",
            "[fc00::1]:80",
            "[fd12:3456::1]:80",
            "[fe80::1]:80",
            "[ff02::1]:80",
            "[::ffff:10.0.0.1]:80",
            "[::ffff:127.0.0.1]:80",
            "[64:ff9b::a00:1]:80",
        ] {
            assert!(!policy.allows(addr(peer)), "{peer} allowed");
        }
        for peer in [
            "8.8.8.8:53",
            "100.128.0.1:80",
            "172.32.0.1:80",
            "[2a00:1450::1]:443",
        ] {
            assert!(policy.allows(addr(peer)), "{peer} refused");
        }
    }

    #[test]
    fn the_brokers_own_sockets_are_never_peers() {
        let policy = PeerPolicy::new(
            vec!["0.0.0.0/0".parse().expect("net")],
            vec![],
            vec![addr("0.0.0.0:8080"), addr("198.51.100.1:3478")],
            "198.51.100.1".parse().expect("ip"),
        );
        assert!(!policy.allows(addr("198.51.100.1:8080")));
        assert!(!policy.allows(addr("198.51.100.1:3478")));
        assert!(policy.allows(addr("198.51.100.1:3479")));
    }

    #[test]
    fn a_loopback_relay_may_relay_to_loopback_only() {
        let policy = PeerPolicy::new(
            vec![],
            vec![],
            vec![addr("127.0.0.1:8080")],
            "127.0.0.1".parse().expect("ip"),
        );
        assert!(policy.allows(addr("127.0.0.1:40000")));
        assert!(policy.allows(addr("[::1]:40000")));
        assert!(!policy.allows(addr("127.0.0.1:8080")));
        assert!(!policy.allows(addr("192.168.1.1:40000")));
    }

    #[test]
    fn the_lists_adjust_the_defaults_and_allowed_wins() {
        let policy = PeerPolicy::new(
            vec!["10.20.0.0/16".parse().expect("net")],
            vec![
                "10.0.0.0/8".parse().expect("net"),
                "8.8.8.0/24".parse().expect("net"),
                "127.0.0.0/8".parse().expect("net"),
            ],
            vec![],
            "127.0.0.1".parse().expect("ip"),
        );
        assert!(policy.allows(addr("10.20.1.1:80")));
        assert!(!policy.allows(addr("10.21.1.1:80")));
        assert!(!policy.allows(addr("8.8.8.8:53")));
        assert!(
            !policy.allows(addr("127.0.0.1:40000")),
            "denied wins over the loopback exception"
        );
    }
}
