//! The ranges services draw from: a service CIDR for cluster IPs and a port
//! range for node ports, and the arithmetic that numbers their members.
//!
//! Members are numbered by an offset from 0 to `size - 1`. The low offsets
//! form a *static band* that dynamic allocation only uses once the rest is
//! full, so that well-known values requested by hand (the DNS service's
//! `10.96.0.10`, say) rarely collide with random picks, as Kubernetes does
//! (KEP-3070 for IPs, KEP-3668 for node ports).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a range could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `ADDRESS/PREFIX`, or the prefix is too long for the address.
    #[error("invalid CIDR {0:?}")]
    InvalidCidr(String),
    /// The CIDR has bits set beyond its prefix (`10.96.0.1/12`).
    #[error("CIDR {0:?} is not a network address")]
    NotNetwork(String),
    /// Nothing is left once the network (and broadcast) address is taken out.
    #[error("CIDR {0} has no allocatable address")]
    TooSmall(String),
    /// Not `FIRST-LAST` with `0 < FIRST <= LAST`.
    #[error("invalid port range {0:?}")]
    InvalidPorts(String),
}

/// IPv6 ranges are capped at this many members, as Kubernetes' allocator is.
const MAX_V6_MEMBERS: u128 = 1 << 16;

/// A service CIDR, e.g. `10.96.0.0/12`. The network address (and, for IPv4,
/// the broadcast address) is never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    network: IpAddr,
    prefix: u8,
}

impl ServiceCidr {
    /// Kubernetes' (kubeadm's) default service CIDR.
    pub const DEFAULT: &'static str = "10.96.0.0/12";

    fn bits(&self) -> u8 {
        if self.network.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn base(&self) -> u128 {
        match self.network {
            IpAddr::V4(a) => u32::from(a) as u128,
            IpAddr::V6(a) => u128::from(a),
        }
    }

    /// Every address of the CIDR, network and broadcast included.
    fn span(&self) -> u128 {
        let host_bits = u32::from(self.bits() - self.prefix);
        if host_bits >= 128 {
            u128::MAX
        } else {
            1u128 << host_bits
        }
    }

    /// The bits below the prefix.
    fn host_mask(&self) -> u128 {
        match u32::from(self.bits() - self.prefix) {
            128 => u128::MAX,
            host_bits => (1u128 << host_bits) - 1,
        }
    }

    /// How many addresses can be handed out.
    pub fn size(&self) -> u64 {
        let n = if self.network.is_ipv4() {
            self.span().saturating_sub(2)
        } else {
            self.span().min(MAX_V6_MEMBERS) - 1
        };
        n as u64
    }

    /// The size of the static band (see the module docs): a sixteenth of the
    /// CIDR, at least 16 and at most 256 addresses, none for tiny CIDRs.
    pub fn static_band(&self) -> u64 {
        static_band(self.span(), 16, 256, 16).min(self.size())
    }

    /// `IPv4` or `IPv6`, as `spec.ipFamilies` spells it.
    pub fn family(&self) -> &'static str {
        if self.network.is_ipv4() {
            "IPv4"
        } else {
            "IPv6"
        }
    }

    /// The address at `offset` (offset 0 is the first address after the network's).
    pub fn at(&self, offset: u64) -> IpAddr {
        let n = self.base() + 1 + u128::from(offset);
        match self.network {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
        }
    }

    /// The first allocatable address: the `kubernetes` service's.
    pub fn first(&self) -> IpAddr {
        self.at(0)
    }

    /// The offset of `ip`, or `None` if it cannot be handed out from this range.
    pub fn offset_of(&self, ip: IpAddr) -> Option<u64> {
        let n = match (ip, self.network) {
            (IpAddr::V4(a), IpAddr::V4(_)) => u32::from(a) as u128,
            (IpAddr::V6(a), IpAddr::V6(_)) => u128::from(a),
            _ => return None,
        };
        let offset = n.checked_sub(self.base() + 1)?;
        (offset < u128::from(self.size())).then_some(offset as u64)
    }
}

impl Default for ServiceCidr {
    fn default() -> Self {
        ServiceCidr::DEFAULT
            .parse()
            .expect("the default CIDR parses")
    }
}

impl FromStr for ServiceCidr {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || RangeError::InvalidCidr(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let network: IpAddr = addr.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        let cidr = ServiceCidr { network, prefix };
        if prefix > cidr.bits() {
            return Err(invalid());
        }
        if cidr.base() & cidr.host_mask() != 0 {
            return Err(RangeError::NotNetwork(s.to_string()));
        }
        if cidr.size() == 0 {
            return Err(RangeError::TooSmall(s.to_string()));
        }
        Ok(cidr)
    }
}

impl fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A node port range, e.g. `30000-32767` (both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// Kubernetes' default `--service-node-port-range`.
    pub const DEFAULT: PortRange = PortRange {
        first: 30000,
        last: 32767,
    };

    /// The range `first..=last`.
    ///
    /// # Errors
    /// [`RangeError::InvalidPorts`] unless `0 < first <= last`.
    pub fn new(first: u16, last: u16) -> Result<Self, RangeError> {
        if first == 0 || first > last {
            return Err(RangeError::InvalidPorts(format!("{first}-{last}")));
        }
        Ok(PortRange { first, last })
    }

    /// How many ports the range holds.
    pub fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// The size of the static band: a 32nd of the range, at least 16 and at
    /// most 128 ports, none for tiny ranges.
    pub fn static_band(&self) -> u64 {
        static_band(u128::from(self.size()), 16, 128, 32).min(self.size())
    }

    /// The port at `offset`.
    pub fn at(&self, offset: u64) -> u16 {
        self.first + offset as u16
    }

    /// The offset of `port`, or `None` outside the range.
    pub fn offset_of(&self, port: i64) -> Option<u64> {
        (i64::from(self.first)..=i64::from(self.last))
            .contains(&port)
            .then(|| (port - i64::from(self.first)) as u64)
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange::DEFAULT
    }
}

impl FromStr for PortRange {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || RangeError::InvalidPorts(s.to_string());
        let (a, b) = s.split_once('-').ok_or_else(invalid)?;
        let first = a.trim().parse().map_err(|_| invalid())?;
        let last = b.trim().parse().map_err(|_| invalid())?;
        PortRange::new(first, last).map_err(|_| invalid())
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Both ranges a service draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServiceRanges {
    /// Where cluster IPs come from (default `10.96.0.0/12`).
    pub cluster_ips: ServiceCidr,
    /// Where node ports come from (default `30000-32767`).
    pub node_ports: PortRange,
}

/// `min(max(low, total / step), high)`, or 0 when `total <= low`: the shape
/// of Kubernetes' static-band formula for both IPs and ports.
fn static_band(total: u128, low: u128, high: u128, step: u128) -> u64 {
    if total <= low {
        return 0;
    }
    (total / step).clamp(low, high) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cidr_hands_out_everything_but_network_and_broadcast() {
        let cidr = ServiceCidr::default();
        assert_eq!(cidr.to_string(), "10.96.0.0/12");
        assert_eq!(cidr.size(), (1 << 20) - 2);
        assert_eq!(cidr.first().to_string(), "10.96.0.1");
        assert_eq!(cidr.at(cidr.size() - 1).to_string(), "10.111.255.254");
        assert_eq!(cidr.offset_of("10.96.0.0".parse().unwrap()), None);
        assert_eq!(cidr.offset_of("10.111.255.255".parse().unwrap()), None);
        assert_eq!(cidr.offset_of("10.96.0.10".parse().unwrap()), Some(9));
        assert_eq!(cidr.offset_of("10.112.0.1".parse().unwrap()), None);
        assert_eq!(cidr.offset_of("fd00::1".parse().unwrap()), None);
        assert_eq!(cidr.static_band(), 256);
        assert_eq!(cidr.family(), "IPv4");
    }

    #[test]
    fn small_cidrs_have_no_static_band_and_bad_ones_are_refused() {
        let small: ServiceCidr = "10.0.0.0/28".parse().unwrap();
        assert_eq!((small.size(), small.static_band()), (14, 0));
        let mid: ServiceCidr = "10.0.0.0/24".parse().unwrap();
        assert_eq!(mid.static_band(), 16);
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.96.0.1/12",
            "nope/8",
            "10.0.0.0/32",
        ] {
            assert!(bad.parse::<ServiceCidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_ranges_are_capped_and_keep_their_last_address() {
        let cidr: ServiceCidr = "fd00:10:96::/112".parse().unwrap();
        assert_eq!(cidr.size(), 65535);
        assert_eq!(cidr.family(), "IPv6");
        assert_eq!(cidr.first().to_string(), "fd00:10:96::1");
        assert_eq!(
            cidr.offset_of("fd00:10:96::ffff".parse().unwrap()),
            Some(65534)
        );
        let wide: ServiceCidr = "fd00::/64".parse().unwrap();
        assert_eq!(wide.size(), 65535);
    }

    #[test]
    fn the_default_port_range_is_kubernetes_and_parses_back() {
        let ports = PortRange::default();
        assert_eq!(ports.to_string(), "30000-32767");
        assert_eq!(ports.size(), 2768);
        assert_eq!(ports.static_band(), 86);
        assert_eq!(ports.offset_of(30000), Some(0));
        assert_eq!(ports.offset_of(32767), Some(2767));
        assert_eq!(ports.offset_of(29999), None);
        assert_eq!(ports.offset_of(70000), None);
        assert_eq!("30000-32767".parse::<PortRange>().unwrap(), ports);
        assert!("32767-30000".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
    }
}
