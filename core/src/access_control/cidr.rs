//! IPv4/IPv6 networks and client addresses as Envoy reports them.

use std::net::IpAddr;

/// A network, `10.0.0.0/8` or `::1/128`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 network (e.g. 10.0.0.0/8)"))?;
        let max = match net {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max}"))?,
        };
        let cidr = Cidr { net, prefix };
        if cidr.masked(net) != bits(net) {
            return Err(format!(
                "{text:?} has host bits set; write the network address (e.g. 10.0.0.0/8)"
            ));
        }
        Ok(cidr)
    }

    fn masked(&self, ip: IpAddr) -> u128 {
        let (value, width) = match ip {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32u32),
            IpAddr::V6(v) => (u128::from(v), 128u32),
        };
        let host = width.saturating_sub(u32::from(self.prefix));
        match host {
            0 => value,
            h if h >= 128 => 0,
            h => value & !((1u128 << h) - 1),
        }
    }

    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                self.masked(ip) == bits(self.net)
            }
            _ => false,
        }
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

/// The IP of an address as Envoy and proxies write it: `1.2.3.4`,
/// `1.2.3.4:5678`, `::1`, `[::1]:80`. `None` for anything else.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest.split_once(']')?;
        if !(port.is_empty() || port.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    let (host, port) = text.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The client address in `x-forwarded-for` when `hops` trusted proxies
/// each appended the address they received from: the `hops`-th entry from
/// the right. Entries to its left were written by the client and are
/// ignored. `None` when the header has fewer entries, or that entry is not
/// an address.
pub fn forwarded_client(header: &str, hops: u32) -> Option<IpAddr> {
    let hops = usize::try_from(hops).ok()?;
    let entry = header.rsplit(',').nth(hops.checked_sub(1)?)?;
    parse_ip(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let ten = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(ten.contains("10.200.1.1".parse().unwrap()));
        assert!(ten.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!ten.contains("11.0.0.1".parse().unwrap()));
        assert!(!ten.contains("::1".parse().unwrap()));
        let lo6 = Cidr::parse("::1/128").unwrap();
        assert!(lo6.contains("::1".parse().unwrap()));
        assert!(!lo6.contains("::2".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1")
            .unwrap()
            .contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "::/129",
            "ten",
            "10.0.0.0/",
            "10.0.0.0/-1",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_with_and_without_ports() {
        assert_eq!(parse_ip("10.1.2.3:4444"), "10.1.2.3".parse().ok());
        assert_eq!(parse_ip("[::1]:80"), "::1".parse().ok());
        assert_eq!(parse_ip(" 2001:db8::1 "), "2001:db8::1".parse().ok());
        assert_eq!(parse_ip("::ffff:10.0.0.1"), "10.0.0.1".parse().ok());
        assert_eq!(parse_ip("unknown"), None);
        assert_eq!(parse_ip("10.0.0.1:x"), None);
    }

    #[test]
    fn forwarded_for_counts_trusted_hops_from_the_right() {
        let h = "10.0.0.5, 203.0.113.9, 192.0.2.1";
        assert_eq!(forwarded_client(h, 1), "192.0.2.1".parse().ok());
        assert_eq!(forwarded_client(h, 2), "203.0.113.9".parse().ok());
        assert_eq!(forwarded_client(h, 3), "10.0.0.5".parse().ok());
        assert_eq!(forwarded_client(h, 4), None, "fewer entries than hops");
        assert_eq!(forwarded_client(h, 0), None);
        assert_eq!(forwarded_client("garbage, 192.0.2.1", 2), None);
    }
}
