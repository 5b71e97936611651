//! Resolves a push service's host name, keeping only addresses a push service can have. A
//! subscription's endpoint comes from a browser, so from anyone: an IP literal in it is
//! checked when it is stored ([`super::subscription`]), but a name is checked here, on every
//! connection, against what it resolves to then. Otherwise a name pointing into the broker's
//! own networks (an attacker's DNS record, say) would have the broker connect there.
use super::subscription::is_private;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The system resolver, minus private, loopback (unless `loopback`: tests' push services),
/// link-local, unspecified, broadcast and multicast addresses. A name with nothing left is an
/// error, so the push fails as for a service that cannot be reached.
#[derive(Clone)]
pub struct PublicOnly {
    system: GaiResolver,
    loopback: bool,
}

impl PublicOnly {
    pub fn new(loopback: bool) -> Self {
        Self {
            system: GaiResolver::new(),
            loopback,
        }
    }
}

/// Whether the broker may connect to `ip` for a push.
fn allowed(ip: IpAddr, loopback: bool) -> bool {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return loopback;
    }
    !is_private(ip) && !ip.is_multicast()
}

impl tower_service::Service<Name> for PublicOnly {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_owned();
        let resolving = self.system.call(name);
        let loopback = self.loopback;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = resolving
                .await?
                .filter(|addr| allowed(addr.ip(), loopback))
                .collect();
            if addrs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{host} resolves to no public address; not a push service"),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_allowed() {
        let public = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"];
        let private = [
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ];
        for ip in public {
            assert!(allowed(ip.parse().expect("ip"), false), "{ip}");
        }
        for ip in private {
            assert!(!allowed(ip.parse().expect("ip"), true), "{ip}");
        }
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(!allowed(ip, false) && allowed(ip, true), "{ip}");
        }
    }

    /// Through the system resolver: `localhost` (from the hosts file, no DNS) names loopback
    /// only, so the push client refuses it, unless loopback is allowed.
    #[tokio::test]
    async fn a_name_of_loopback_alone_is_refused_through_the_system_resolver() {
        use std::str::FromStr;
        use tower_service::Service;
        let name = || Name::from_str("localhost").expect("name");
        let refused = PublicOnly::new(false).call(name()).await;
        let err = refused.expect_err("localhost resolves to loopback alone");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        let allowed: Vec<SocketAddr> = PublicOnly::new(true)
            .call(name())
            .await
            .expect("resolves")
            .collect();
        assert!(
            !allowed.is_empty() && allowed.iter().all(|a| a.ip().is_loopback()),
            "{allowed:?}"
        );
    }
}
