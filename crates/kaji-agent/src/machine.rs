//! What the node is made of: CPUs, memory, disk, identity and its primary
//! address, read from `/proc`, `/etc` and `statvfs` as cAdvisor would for
//! kubelet. Simulated nodes get a fixed [`MachineInfo`] instead.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Pods a node accepts, as kubelet's default `maxPods`.
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Memory kubelet keeps back from allocatable by default (the
/// `memory.available<100Mi` hard eviction threshold).
const EVICTION_MEMORY_BYTES: u64 = 100 * 1024 * 1024;

/// The node's hardware and identity, as reported in its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// Logical CPUs.
    pub cpus: u32,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Size of the filesystem holding the data directory, in bytes.
    pub ephemeral_storage_bytes: u64,
    /// Pods the node accepts.
    pub max_pods: u32,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel_version: String,
    /// `PRETTY_NAME` from `/etc/os-release`.
    pub os_image: String,
    /// The host's name.
    pub hostname: String,
}

impl MachineInfo {
    /// Reads this machine, sizing ephemeral storage from the filesystem that
    /// holds `data_dir`. Anything unreadable is reported as zero or empty.
    pub fn detect(data_dir: &Path) -> MachineInfo {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let cpus = std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1);
        MachineInfo {
            cpus,
            memory_bytes: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| mem_total_bytes(&m))
                .unwrap_or(0),
            ephemeral_storage_bytes: filesystem_bytes(data_dir).unwrap_or(0),
            max_pods: DEFAULT_MAX_PODS,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            os_image: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|s| pretty_name(&s))
                .unwrap_or_else(|| "Linux".to_string()),
            hostname: Some(read("/proc/sys/kernel/hostname"))
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_string()),
        }
    }

    /// A made-up machine for a simulated node.
    pub fn simulated(node_name: &str, cpus: u32, memory_bytes: u64, max_pods: u32) -> MachineInfo {
        MachineInfo {
            cpus,
            memory_bytes,
            ephemeral_storage_bytes: 100 * 1024 * 1024 * 1024,
            max_pods,
            machine_id: String::new(),
            boot_id: String::new(),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image: "kaji simulated node".to_string(),
            hostname: node_name.to_string(),
        }
    }

    /// `status.capacity`.
    pub fn capacity(&self) -> BTreeMap<String, Quantity> {
        self.resources(self.memory_bytes, self.ephemeral_storage_bytes)
    }

    /// `status.allocatable`: capacity less kubelet's default eviction
    /// thresholds (100Mi of memory, 10% of the filesystem).
    pub fn allocatable(&self) -> BTreeMap<String, Quantity> {
        self.resources(
            self.memory_bytes.saturating_sub(EVICTION_MEMORY_BYTES),
            self.ephemeral_storage_bytes - self.ephemeral_storage_bytes / 10,
        )
    }

    fn resources(&self, memory: u64, storage: u64) -> BTreeMap<String, Quantity> {
        let q = |s: String| Quantity(s);
        BTreeMap::from([
            ("cpu".to_string(), q(self.cpus.to_string())),
            ("ephemeral-storage".to_string(), q(storage.to_string())),
            ("hugepages-1Gi".to_string(), q("0".to_string())),
            ("hugepages-2Mi".to_string(), q("0".to_string())),
            ("memory".to_string(), q(format!("{}Ki", memory / 1024))),
            ("pods".to_string(), q(self.max_pods.to_string())),
        ])
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn pretty_name(os_release: &str) -> Option<String> {
    let value = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
    Some(value.trim_matches('"').to_string())
}

/// The size of the filesystem holding `path` (its nearest existing ancestor).
fn filesystem_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stat = rustix::fs::statvfs(existing).ok()?;
    Some(stat.f_blocks.saturating_mul(stat.f_frsize))
}

/// The kernel's Go name for this architecture (`amd64`, `arm64`, ...).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

/// The host's primary IPv4 address: the local address on the interface of
/// the default route (what kubelet picks without `--node-ip`), else loopback.
pub fn primary_ipv4() -> IpAddr {
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    default_route_address(&route, &trie).map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4)
}

/// Finds a local address inside a subnet routed through the default
/// route's interface, from `/proc/net/route` and `/proc/net/fib_trie`.
fn default_route_address(route: &str, fib_trie: &str) -> Option<Ipv4Addr> {
    let rows: Vec<Vec<&str>> = route
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .filter(|r: &Vec<&str>| r.len() >= 8)
        .collect();
    let iface = rows.iter().find(|r| r[1] == "00000000")?[0];
    // /proc/net/route prints addresses as little-endian hex.
    let parse = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::from_be);
    let subnets: Vec<(u32, u32)> = rows
        .iter()
        .filter(|r| r[0] == iface && r[7] != "00000000")
        .filter_map(|r| Some((parse(r[1])?, parse(r[7])?)))
        .collect();
    let mut previous: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            previous = addr.parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(addr) = previous.filter(|a| !a.is_loopback()) {
                let bits = u32::from(addr);
                if subnets.iter().any(|(net, mask)| bits & mask == net & mask) {
                    return Some(addr);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_interface_address_is_the_primary_one() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n\
            \x20    |-- 10.1.0.1\n        /32 host LOCAL\n     |-- 192.0.2.2\n        /32 host LOCAL\n";
        assert_eq!(
            default_route_address(route, trie),
            Some(Ipv4Addr::new(192, 0, 2, 2))
        );
        assert_eq!(default_route_address("Iface\n", trie), None);
    }

    #[test]
    fn memory_is_read_from_meminfo_in_bytes() {
        assert_eq!(
            mem_total_bytes("MemTotal:       2048 kB\nMemFree: 1 kB\n"),
            Some(2048 * 1024)
        );
    }

    #[test]
    fn allocatable_keeps_back_the_eviction_thresholds() {
        let m = MachineInfo::simulated("n", 4, 1024 * 1024 * 1024, 110);
        assert_eq!(m.capacity()["memory"].0, "1048576Ki");
        assert_eq!(m.allocatable()["memory"].0, "946176Ki");
        assert_eq!(m.capacity()["pods"].0, "110");
        assert_eq!(m.allocatable()["cpu"].0, "4");
    }

    #[test]
    fn this_machine_has_cpus_and_memory() {
        let m = MachineInfo::detect(Path::new("/nonexistent/dir"));
        assert!(m.cpus >= 1);
        assert!(m.memory_bytes > 0);
        assert!(m.ephemeral_storage_bytes > 0);
    }
}
