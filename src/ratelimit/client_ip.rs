//! Who the client is: the TCP peer, unless that peer is a trusted proxy;
//! only then are `Forwarded` / `X-Forwarded-For` read, right to left,
//! skipping trusted hops. A header from anyone else changes nothing.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies(networks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&ip))
    }

    /// The client of a request from `peer` carrying these header values
    /// (`forwarded` wins over `x_forwarded_for` when both are present).
    pub fn client(&self, peer: IpAddr, forwarded: &[&str], x_forwarded_for: &[&str]) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<Option<IpAddr>> = if forwarded.is_empty() {
            x_forwarded_for
                .iter()
                .flat_map(|value| value.split(','))
                .map(|hop| parse_hop(hop.trim()))
                .collect()
        } else {
            forwarded
                .iter()
                .flat_map(|value| value.split(','))
                .map(forwarded_for)
                .collect()
        };
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Some(ip) if self.trusts(client) => client = ip,
                // An unreadable hop behind a trusted proxy: stop at what is known.
                _ => break,
            }
        }
        client
    }
}

/// The network an IP is limited as: IPv4 whole, IPv6 by its first
/// `ipv6_prefix` bits (one subscriber usually holds a whole /64).
pub fn network_of(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, ipv6_prefix.min(128))
            .map_or(ip, |net| IpAddr::V6(net.trunc().addr())),
    }
}

/// The `for=` of one `Forwarded` element (RFC 7239).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.eq_ignore_ascii_case("for")
            .then(|| parse_hop(value.trim().trim_matches('"')))
            .flatten()
    })
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|ip| ip.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec![
            "10.0.0.0/8".parse().expect("cidr"),
            "fd00::/8".parse().expect("cidr"),
        ])
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let client = proxies().client(ip("203.0.113.9"), &["for=198.51.100.1"], &["198.51.100.2"]);
        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_chain_is_read_right_to_left() {
        let p = proxies();
        assert_eq!(
            p.client(ip("10.0.0.1"), &[], &["198.51.100.7, 10.1.1.1"]),
            ip("198.51.100.7")
        );
        // A spoofed left-most entry added by the client is not reached.
        assert_eq!(
            p.client(ip("10.0.0.1"), &[], &["6.6.6.6, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            p.client(ip("10.0.0.1"), &[], &["198.51.100.7", "10.2.2.2"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forwarded_wins_and_understands_ports_and_ipv6() {
        let p = proxies();
        let forwarded = ["for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.3.3.3"];
        assert_eq!(
            p.client(ip("fd00::1"), &forwarded, &["198.51.100.7"]),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            p.client(ip("10.0.0.1"), &["for=192.0.2.60:8080;by=10.0.0.1"], &[]),
            ip("192.0.2.60")
        );
    }

    #[test]
    fn ipv6_clients_are_one_network_per_prefix() {
        assert_eq!(
            network_of(ip("2001:db8:1:2:aaaa::1"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            network_of(ip("2001:db8:1:2:bbbb::9"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(network_of(ip("198.51.100.7"), 64), ip("198.51.100.7"));
    }

    #[test]
    fn garbage_behind_a_trusted_proxy_stops_the_walk() {
        assert_eq!(
            proxies().client(ip("10.0.0.1"), &[], &["unknown"]),
            ip("10.0.0.1")
        );
        assert_eq!(proxies().client(ip("10.0.0.1"), &[], &[]), ip("10.0.0.1"));
    }
}
