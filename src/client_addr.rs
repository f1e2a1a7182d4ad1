//! The client's address for the access line: the socket's peer, or, when
//! that peer is a trusted proxy (`trusted_proxies`), the address its
//! `X-Forwarded-For` (else `Forwarded: for=`) names. std's `IpAddr` is all a
//! prefix match needs, so no CIDR crate.

use std::net::IpAddr;
use std::str::FromStr;

/// An address block: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("'{s}' is not an IP address or CIDR like 10.0.0.0/8 or fd00::/8");
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Cidr { net, bits })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix(u32::from(n).into(), u32::from(a).into(), self.bits, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix(u128::from(n), u128::from(a), self.bits, 128),
            _ => false,
        }
    }
}

/// Whether the first `bits` of two `width`-bit numbers agree.
fn prefix(net: u128, addr: u128, bits: u8, width: u8) -> bool {
    if bits == 0 {
        return true;
    }
    let shift = u32::from(width - bits);
    (net >> shift) == (addr >> shift)
}

/// An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn trusted(proxies: &[Cidr], ip: IpAddr) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// The client of a request from `peer`. Only a trusted peer's forwarding
/// headers count; in them the client is the rightmost address not itself a
/// trusted proxy (entries left of it could be written by anyone).
pub fn client(peer: Option<IpAddr>, proxies: &[Cidr], headers: &http::HeaderMap) -> Option<IpAddr> {
    let peer = canonical(peer?);
    if proxies.is_empty() || !trusted(proxies, peer) {
        return Some(peer);
    }
    let hops = forwarded_for(headers);
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = hop.map(canonical) else {
            // Unreadable: nothing to its left can be trusted either.
            break;
        };
        client = ip;
        if !trusted(proxies, ip) {
            break;
        }
    }
    Some(client)
}

/// The hops a request passed, oldest first: `X-Forwarded-For` when sent,
/// else `Forwarded`'s `for=` values. `None` for an entry that is not an IP
/// (`unknown`, an obfuscated name).
fn forwarded_for(headers: &http::HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| parse_hop(h.trim()))
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|elem| {
            elem.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.eq_ignore_ascii_case("for").then(|| parse_hop(v.trim()))
            })
        })
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`, quoted or not.
fn parse_hop(h: &str) -> Option<IpAddr> {
    let h = h.trim_matches('"');
    if let Ok(ip) = h.parse() {
        return Some(ip);
    }
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    h.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.9.9.9")), "v4-mapped peer");
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(client(Some(ip("9.9.9.9")), &[], &h), Some(ip("9.9.9.9")));
        let p = cidrs(&["127.0.0.1/32"]);
        assert_eq!(client(Some(ip("9.9.9.9")), &p, &h), Some(ip("9.9.9.9")));
    }

    #[test]
    fn trusted_peers_name_the_rightmost_untrusted_hop() {
        let p = cidrs(&["127.0.0.0/8", "10.0.0.0/8"]);
        let peer = Some(ip("127.0.0.1"));
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(client(peer, &p, &h), Some(ip("203.0.113.7")));
        // Two header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(client(peer, &p, &h), Some(ip("203.0.113.7")));
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=http",
        )]);
        assert_eq!(client(peer, &p, &h), Some(ip("2001:db8::1")));
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;by=10.0.0.1")]);
        assert_eq!(client(peer, &p, &h), Some(ip("192.0.2.60")));
        // No header: the proxy itself.
        assert_eq!(client(peer, &p, &headers(&[])), Some(ip("127.0.0.1")));
        // Unreadable hop: the last trusted one is as far as it goes.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, unknown, 10.0.0.3")]);
        assert_eq!(client(peer, &p, &h), Some(ip("10.0.0.3")));
    }
}
