//! The node's pod CIDR: an IPv4 network whose first address is the bridge.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Why a pod CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pod CIDR {cidr:?}: {reason}")]
pub struct CidrError {
    /// The text given.
    pub cidr: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// An IPv4 pod CIDR such as `10.244.0.0/24`.
///
/// The first address is the gateway (the host bridge); host-local hands out
/// the rest, so the prefix is at most /30 (one gateway, one pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PodCidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl PodCidr {
    /// The smallest network that still holds a gateway and one pod.
    pub const MAX_PREFIX: u8 = 30;

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The gateway: the network's first address, assigned to the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Whether `ip` lies inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }
}

fn mask(prefix: u8) -> u32 {
    // prefix is 1..=30 by construction, so the shift never overflows.
    u32::MAX << (32 - u32::from(prefix))
}

impl FromStr for PodCidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let err = |reason| CidrError {
            cidr: s.to_string(),
            reason,
        };
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(|| err("no /prefix"))?;
        if addr.contains(':') {
            return Err(err("IPv6 pod CIDRs are not supported"));
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| err("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| err("bad prefix length"))?;
        if !(1..=Self::MAX_PREFIX).contains(&prefix) {
            return Err(err("prefix must be between /1 and /30"));
        }
        if u32::from(addr) & !mask(prefix) != 0 {
            return Err(err("address has host bits set"));
        }
        Ok(PodCidr {
            network: addr,
            prefix,
        })
    }
}

impl fmt::Display for PodCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_cidr_parses_and_its_first_address_is_the_gateway() {
        let cidr: PodCidr = "10.244.3.0/24".parse().unwrap();
        assert_eq!(cidr.network(), Ipv4Addr::new(10, 244, 3, 0));
        assert_eq!(cidr.prefix(), 24);
        assert_eq!(cidr.gateway(), Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(cidr.to_string(), "10.244.3.0/24");
    }

    #[test]
    fn contains_is_true_only_inside_the_network() {
        let cidr: PodCidr = "10.213.4.0/30".parse().unwrap();
        assert!(cidr.contains(Ipv4Addr::new(10, 213, 4, 2)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 213, 4, 4)));
    }

    #[test]
    fn malformed_ipv6_tiny_and_unaligned_cidrs_are_refused() {
        for (text, reason) in [
            ("10.0.0.0", "no /prefix"),
            ("fd00::/64", "IPv6 pod CIDRs are not supported"),
            ("10.0.0.300/24", "not an IPv4 address"),
            ("10.0.0.0/x", "bad prefix length"),
            ("10.0.0.0/31", "prefix must be between /1 and /30"),
            ("10.0.0.0/0", "prefix must be between /1 and /30"),
            ("10.0.0.1/24", "address has host bits set"),
        ] {
            let err = text.parse::<PodCidr>().unwrap_err();
            assert_eq!(err.reason, reason, "{text}");
        }
    }
}
