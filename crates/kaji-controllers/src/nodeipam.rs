//! Node IPAM: gives every Node its own pod range (`spec.podCIDR`,
//! `spec.podCIDRs`) out of the cluster CIDR, as kube-controller-manager's
//! range allocator does with `--allocate-node-cidrs`.
//!
//! The cluster CIDR (default `10.244.0.0/16`, or an IPv4 and IPv6 pair for
//! dual stack) is cut into ranges of the node mask size (default /24 for
//! IPv4, /64 for IPv6). Ranges that nodes already carry are respected and
//! marked used before anything is handed out; a node without one gets the next
//! free range after the last one handed out (wrapping around, so a freed range
//! is reused only once the others are taken, as Kubernetes' `CidrSet` does); a
//! deleted node's range is freed. When no range is left the node gets a
//! `CIDRNotAvailable` Event and waits for one to be freed.
//!
//! One task handles every node event in order and remembers which node each
//! range went to, so a range is never handed to two nodes; writes are pinned
//! to the node's resourceVersion, so a range set by someone else meanwhile is
//! never overwritten. This module owns `spec.podCIDR` and `spec.podCIDRs`
//! only, and only writes them on nodes that have none.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::{object_reference, EventRecorder, EventType};
use crate::Error;

/// How often nodes still waiting for a range are tried again.
const RETRY_PERIOD: Duration = Duration::from_secs(5);

/// At most 2^16 ranges per cluster CIDR, as Kubernetes' `clusterSubnetMaxDiff`.
const MAX_MASK_DIFF: u8 = 16;

/// An IP network: an address with its host bits cleared, and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a CIDR.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid CIDR {0:?}")]
pub struct ParseCidrError(String);

impl Cidr {
    /// The network's address bits, as a number.
    fn base(&self) -> u128 {
        match self.addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    /// 32 or 128.
    fn bits(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The network's last address, as a number.
    fn last(&self) -> u128 {
        self.base() | host_mask(self.bits(), self.prefix)
    }

    /// The network of the given family with address bits `base`.
    fn from_parts(v4: bool, base: u128, prefix: u8) -> Cidr {
        let addr = if v4 {
            IpAddr::V4(Ipv4Addr::from(u32::try_from(base).unwrap_or(u32::MAX)))
        } else {
            IpAddr::V6(Ipv6Addr::from(base))
        };
        Cidr { addr, prefix }
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

/// The host part of a `bits`-bit address under a `prefix`-bit mask.
fn host_mask(bits: u8, prefix: u8) -> u128 {
    let host_bits = u32::from(bits.saturating_sub(prefix));
    1u128.checked_shl(host_bits).map_or(u128::MAX, |b| b - 1)
}

impl FromStr for Cidr {
    type Err = ParseCidrError;

    /// Parses `address/prefix`, clearing host bits as Go's `net.ParseCIDR` does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseCidrError(s.to_string());
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(bad());
        }
        let parsed = Cidr { addr, prefix };
        Ok(Cidr::from_parts(
            addr.is_ipv4(),
            parsed.base() & !host_mask(bits, prefix),
            prefix,
        ))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a [`Config`] is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A cluster CIDR does not parse.
    #[error(transparent)]
    Cidr(#[from] ParseCidrError),
    /// Not one CIDR, nor one IPv4 and one IPv6 CIDR.
    #[error("the cluster CIDR must be one CIDR, or an IPv4 and an IPv6 CIDR")]
    Families,
    /// The node mask is shorter than the cluster CIDR's prefix, or longer than an address.
    #[error("node mask /{node} does not fit in cluster CIDR {cluster}")]
    MaskDoesNotFit {
        /// The cluster CIDR.
        cluster: Cidr,
        /// The node mask size.
        node: u8,
    },
    /// The node mask would cut the cluster CIDR into more than 2^16 ranges.
    #[error("node mask /{node} cuts cluster CIDR {cluster} into more than 65536 ranges")]
    TooManyRanges {
        /// The cluster CIDR.
        cluster: Cidr,
        /// The node mask size.
        node: u8,
    },
}

/// Which ranges to hand out: each cluster CIDR with its node mask size.
///
/// The default is `10.244.0.0/16` in /24 ranges (256 nodes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    ranges: Vec<(Cidr, u8)>,
}

impl Config {
    /// `cluster_cidr` as `--cluster-cidr`: one CIDR, or an IPv4 and an IPv6
    /// CIDR separated by a comma; IPv4 ranges get `/node_mask_ipv4`, IPv6 ones
    /// `/node_mask_ipv6` (`--node-cidr-mask-size-ipv4`, `-ipv6`).
    ///
    /// # Errors
    /// A CIDR does not parse, the families are wrong, or a mask does not fit.
    pub fn new(
        cluster_cidr: &str,
        node_mask_ipv4: u8,
        node_mask_ipv6: u8,
    ) -> Result<Config, ConfigError> {
        let cidrs = cluster_cidr
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<Cidr>, _>>()?;
        let families_ok = match cidrs.as_slice() {
            [_] => true,
            [a, b] => a.addr.is_ipv4() != b.addr.is_ipv4(),
            _ => false,
        };
        if !families_ok {
            return Err(ConfigError::Families);
        }
        let mut ranges = Vec::new();
        for cluster in cidrs {
            let node = if cluster.addr.is_ipv4() {
                node_mask_ipv4
            } else {
                node_mask_ipv6
            };
            if node < cluster.prefix || node > cluster.bits() {
                return Err(ConfigError::MaskDoesNotFit { cluster, node });
            }
            if node - cluster.prefix > MAX_MASK_DIFF {
                return Err(ConfigError::TooManyRanges { cluster, node });
            }
            ranges.push((cluster, node));
        }
        Ok(Config { ranges })
    }

    /// The cluster CIDRs, in order.
    pub fn cluster_cidrs(&self) -> Vec<Cidr> {
        self.ranges.iter().map(|(c, _)| *c).collect()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new("10.244.0.0/16", 24, 64).expect("the default cluster CIDR is valid")
    }
}

/// The ranges of one cluster CIDR and who holds each.
#[derive(Debug)]
struct CidrSet {
    cluster: Cidr,
    node_prefix: u8,
    /// Range index → node name.
    used: HashMap<u128, String>,
    /// Where the search for a free range starts.
    next: u128,
}

impl CidrSet {
    fn capacity(&self) -> u128 {
        1u128 << (self.node_prefix - self.cluster.prefix)
    }

    fn host_bits(&self) -> u8 {
        self.cluster.bits() - self.node_prefix
    }

    fn range(&self, index: u128) -> Cidr {
        let base = self.cluster.base() + (index << self.host_bits());
        Cidr::from_parts(self.cluster.addr.is_ipv4(), base, self.node_prefix)
    }

    /// The indexes of the ranges `cidr` overlaps, if any.
    fn indexes(&self, cidr: &Cidr) -> Option<std::ops::RangeInclusive<u128>> {
        if cidr.addr.is_ipv4() != self.cluster.addr.is_ipv4() {
            return None;
        }
        let start = cidr.base().max(self.cluster.base());
        let end = cidr.last().min(self.cluster.last());
        if start > end {
            return None;
        }
        let shift = self.host_bits();
        let offset = self.cluster.base();
        Some(((start - offset) >> shift)..=((end - offset) >> shift))
    }

    /// Takes the next free range after the last one handed out.
    fn allocate(&mut self, owner: &str) -> Option<Cidr> {
        let capacity = self.capacity();
        let index = (0..capacity)
            .map(|i| (self.next + i) % capacity)
            .find(|i| !self.used.contains_key(i))?;
        self.used.insert(index, owner.to_string());
        self.next = (index + 1) % capacity;
        Some(self.range(index))
    }
}

/// Every range handed out or found on a node.
#[derive(Debug)]
struct Allocator {
    sets: Vec<CidrSet>,
    /// The ranges this allocator gave each node, until it sees them on the node.
    assigned: HashMap<String, Vec<Cidr>>,
}

impl Allocator {
    fn new(config: &Config) -> Self {
        Allocator {
            sets: config
                .ranges
                .iter()
                .map(|(cluster, node_prefix)| CidrSet {
                    cluster: *cluster,
                    node_prefix: *node_prefix,
                    used: HashMap::new(),
                    next: 0,
                })
                .collect(),
            assigned: HashMap::new(),
        }
    }

    /// Forgets everything (before rebuilding from a fresh list).
    fn clear(&mut self) {
        for set in &mut self.sets {
            set.used.clear();
        }
        self.assigned.clear();
    }

    /// Marks the ranges `cidrs` overlap as held by `owner`. Returns the other
    /// nodes that held one of them; nothing is marked when there are some.
    fn occupy(&mut self, owner: &str, cidrs: &[Cidr]) -> Vec<String> {
        let mut taken = Vec::new();
        let mut claims = Vec::new();
        for cidr in cidrs {
            for (s, set) in self.sets.iter().enumerate() {
                for index in set.indexes(cidr).into_iter().flatten() {
                    match set.used.get(&index) {
                        Some(other) if other != owner => taken.push(other.clone()),
                        _ => claims.push((s, index)),
                    }
                }
            }
        }
        if !taken.is_empty() {
            taken.sort();
            taken.dedup();
            return taken;
        }
        for (s, index) in claims {
            self.sets[s].used.insert(index, owner.to_string());
        }
        Vec::new()
    }

    /// One range from every cluster CIDR for `owner`, or `None` if one has
    /// none left. Repeats what it gave before if `owner` has an assignment.
    fn allocate(&mut self, owner: &str) -> Option<Vec<Cidr>> {
        if let Some(cidrs) = self.assigned.get(owner) {
            return Some(cidrs.clone());
        }
        let mut cidrs = Vec::new();
        for s in 0..self.sets.len() {
            match self.sets[s].allocate(owner) {
                Some(cidr) => cidrs.push(cidr),
                None => {
                    self.release(owner);
                    return None;
                }
            }
        }
        self.assigned.insert(owner.to_string(), cidrs.clone());
        Some(cidrs)
    }

    /// Frees every range `owner` holds.
    fn release(&mut self, owner: &str) {
        for set in &mut self.sets {
            set.used.retain(|_, o| o != owner);
        }
        self.assigned.remove(owner);
    }
}

/// The pod CIDRs a node carries (`podCIDRs`, else `podCIDR`), unparsable ones skipped.
fn node_cidrs(node: &Node) -> Vec<Cidr> {
    let spec = node.spec.as_ref();
    let listed = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    let texts = if listed.is_empty() {
        spec.and_then(|s| s.pod_cidr.clone()).into_iter().collect()
    } else {
        listed
    };
    texts.iter().filter_map(|t| t.parse().ok()).collect()
}

/// Whether the node has any pod CIDR set, parsable or not.
fn has_cidrs(node: &Node) -> bool {
    node.spec.as_ref().is_some_and(|s| {
        s.pod_cidr.as_deref().is_some_and(|c| !c.is_empty())
            || s.pod_cidrs.as_ref().is_some_and(|c| !c.is_empty())
    })
}

/// Runs the allocator with the default [`Config`] until its watch ends.
///
/// # Errors
/// None in practice: the watch retries forever and failed writes are retried.
pub async fn run(client: Client) -> Result<(), Error> {
    run_with(client, Config::default()).await
}

/// Runs the allocator with `config` until its watch ends.
///
/// # Errors
/// As [`run`].
pub async fn run_with(client: Client, config: Config) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let mut ipam = Ipam {
        api: api.clone(),
        allocator: Allocator::new(&config),
        known: HashMap::new(),
        relist: Vec::new(),
        listed: false,
        waiting: BTreeSet::new(),
        events: EventRecorder::new(client, "cidrAllocator"),
    };
    let mut nodes = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut retry = tokio::time::interval(RETRY_PERIOD);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = nodes.next() => match event {
                Some(Ok(event)) => ipam.handle(event).await,
                Some(Err(error)) => tracing::debug!(%error, "node watch"),
                None => return Ok(()),
            },
            _ = retry.tick() => ipam.retry_waiting().await,
        }
    }
}

/// The allocator's state, driven by node events one at a time.
struct Ipam {
    api: Api<Node>,
    allocator: Allocator,
    /// Every node as last seen.
    known: HashMap<String, Node>,
    /// Nodes of a (re)list in progress.
    relist: Vec<Node>,
    /// Whether a full list has been seen, so every used range is known.
    listed: bool,
    /// Nodes still without a range (none left, or the write failed).
    waiting: BTreeSet<String>,
    events: EventRecorder,
}

impl Ipam {
    async fn handle(&mut self, event: Event<Node>) {
        match event {
            Event::Init => self.relist.clear(),
            Event::InitApply(node) => self.relist.push(node),
            Event::InitDone => {
                // Rebuild from what the nodes say: ranges of nodes deleted
                // while the watch was down are freed here.
                self.allocator.clear();
                self.known = std::mem::take(&mut self.relist)
                    .into_iter()
                    .map(|n| (n.name_any(), n))
                    .collect();
                let mut names: Vec<String> = self.known.keys().cloned().collect();
                names.sort();
                for name in &names {
                    self.observe_ranges(name);
                }
                self.listed = true;
                for name in names {
                    self.ensure_range(&name).await;
                }
            }
            Event::Apply(node) => {
                let name = node.name_any();
                self.known.insert(name.clone(), node);
                if self.listed {
                    self.observe_ranges(&name);
                    self.ensure_range(&name).await;
                }
            }
            Event::Delete(node) => {
                let name = node.name_any();
                self.known.remove(&name);
                self.waiting.remove(&name);
                self.allocator.release(&name);
                tracing::debug!(node = %name, "freed the pod range of a deleted node");
                // A freed range may be just what a waiting node needs.
                self.retry_waiting().await;
            }
        }
    }

    /// Marks the ranges node `name` carries as used by it.
    fn observe_ranges(&mut self, name: &str) {
        let Some(node) = self.known.get(name) else {
            return;
        };
        if !has_cidrs(node) {
            return;
        }
        let cidrs = node_cidrs(node);
        // What the node carries wins over what was planned for it.
        if self
            .allocator
            .assigned
            .get(name)
            .is_some_and(|planned| *planned != cidrs)
        {
            self.allocator.release(name);
        }
        self.allocator.assigned.remove(name);
        for other in self.allocator.occupy(name, &cidrs) {
            let planned_only = self.known.get(&other).is_none_or(|n| !has_cidrs(n));
            if planned_only {
                // The other node was only promised this range: move it.
                self.allocator.release(&other);
                self.waiting.insert(other);
            } else {
                tracing::error!(node = %name, %other, "two nodes carry overlapping pod CIDRs");
            }
        }
        // Whatever was released above is no longer contested.
        let _ = self.allocator.occupy(name, &cidrs);
    }

    /// Gives node `name` a range if it has none.
    async fn ensure_range(&mut self, name: &str) {
        let Some(node) = self.known.get(name).cloned() else {
            self.waiting.remove(name);
            return;
        };
        if has_cidrs(&node) {
            self.waiting.remove(name);
            return;
        }
        let Some(cidrs) = self.allocator.allocate(name) else {
            if self.waiting.insert(name.to_string()) {
                tracing::warn!(node = %name, "no pod CIDR left for a node");
                let regarding = object_reference(&node, &());
                let recorder = self.events.clone();
                let message = format!("Node {name} status is now: CIDRNotAvailable");
                tokio::spawn(async move {
                    recorder
                        .record(&regarding, EventType::Normal, "CIDRNotAvailable", &message)
                        .await;
                });
            }
            return;
        };
        let texts: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"podCIDR": texts[0], "podCIDRs": texts},
        });
        match self
            .api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => {
                tracing::info!(node = %name, cidrs = ?texts, "allocated a pod CIDR");
                self.waiting.remove(name);
                self.known.insert(name.to_string(), updated);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.allocator.release(name);
                self.waiting.remove(name);
            }
            // The node changed (409) or the write failed: the range stays
            // promised to it, and the newer version or the retry tries again.
            Err(error) => {
                tracing::debug!(node = %name, %error, "could not set a node's pod CIDR yet");
                self.waiting.insert(name.to_string());
            }
        }
    }

    /// Tries again for every node still waiting for a range.
    async fn retry_waiting(&mut self) {
        if !self.listed {
            return;
        }
        let waiting: Vec<String> = self.waiting.iter().cloned().collect();
        for name in waiting {
            self.ensure_range(&name).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_clear_host_bits_and_print() {
        assert_eq!(cidr("10.244.3.7/16").to_string(), "10.244.0.0/16");
        assert_eq!(cidr("fd00::1/48").to_string(), "fd00::/48");
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn configs_are_checked_like_kube_controller_manager_flags() {
        assert_eq!(
            Config::default().cluster_cidrs(),
            vec![cidr("10.244.0.0/16")]
        );
        assert!(Config::new("10.0.0.0/16,fd00::/48", 24, 64).is_ok());
        assert_eq!(
            Config::new("10.0.0.0/16,10.1.0.0/16", 24, 64),
            Err(ConfigError::Families)
        );
        assert!(matches!(
            Config::new("10.0.0.0/24", 16, 64),
            Err(ConfigError::MaskDoesNotFit { .. })
        ));
        assert!(matches!(
            Config::new("10.0.0.0/8", 25, 64),
            Err(ConfigError::TooManyRanges { .. })
        ));
    }

    #[test]
    fn ranges_are_handed_out_in_turn_and_freed_ones_reused_after_wrapping() {
        let mut a = Allocator::new(&Config::new("10.0.0.0/22", 24, 64).unwrap());
        let got = |a: &mut Allocator, n: &str| a.allocate(n).map(|c| c[0].to_string());
        assert_eq!(got(&mut a, "a").as_deref(), Some("10.0.0.0/24"));
        assert_eq!(got(&mut a, "b").as_deref(), Some("10.0.1.0/24"));
        assert_eq!(
            got(&mut a, "a").as_deref(),
            Some("10.0.0.0/24"),
            "idempotent"
        );
        a.release("a");
        assert_eq!(got(&mut a, "c").as_deref(), Some("10.0.2.0/24"));
        assert_eq!(got(&mut a, "d").as_deref(), Some("10.0.3.0/24"));
        assert_eq!(got(&mut a, "e").as_deref(), Some("10.0.0.0/24"));
        assert_eq!(got(&mut a, "f"), None);
    }

    #[test]
    fn occupied_ranges_are_skipped_and_conflicts_reported() {
        let mut a = Allocator::new(&Config::new("10.0.0.0/22", 24, 64).unwrap());
        assert!(a.occupy("x", &[cidr("10.0.0.0/24")]).is_empty());
        // A /23 covers two ranges; one outside the cluster CIDR covers none.
        assert!(a.occupy("y", &[cidr("10.0.2.0/23")]).is_empty());
        assert!(a.occupy("z", &[cidr("192.168.0.0/24")]).is_empty());
        assert_eq!(a.allocate("n").unwrap()[0].to_string(), "10.0.1.0/24");
        assert_eq!(a.allocate("m"), None);
        assert_eq!(a.occupy("w", &[cidr("10.0.0.0/24")]), vec!["x".to_string()]);
    }

    #[test]
    fn dual_stack_gives_one_range_of_each_family() {
        let mut a = Allocator::new(&Config::new("10.0.0.0/16,fd00::/48", 24, 64).unwrap());
        let got: Vec<String> = a
            .allocate("n")
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["10.0.0.0/24", "fd00::/64"]);
        let got: Vec<String> = a
            .allocate("m")
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["10.0.1.0/24", "fd00:0:0:1::/64"]);
    }
}
