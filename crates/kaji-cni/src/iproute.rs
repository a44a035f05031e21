//! iproute2 on the host: running `ip`, and the pod network's bridge.
//!
//! The bridge, holding the gateway address, is created here rather than by
//! the bridge plugin's `isGateway`, which would also switch on the host's
//! `ip_forward` (see [`crate::conf`]). The address alone gives the host a
//! connected route to the pods, which is all host-to-pod and pod-to-pod
//! traffic on one node needs.

use std::process::Command;

use crate::cidr::PodCidr;

/// An `ip` command that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum IpError {
    /// The `ip` binary could not be started (iproute2 missing?).
    #[error("cannot run `ip {args}`: {source}")]
    Spawn {
        /// The arguments given.
        args: String,
        /// The underlying cause.
        #[source]
        source: std::io::Error,
    },
    /// `ip` ran and reported failure.
    #[error("`ip {args}` failed: {stderr}")]
    Failed {
        /// The arguments given.
        args: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

impl IpError {
    /// Whether `ip` failed because the object already exists.
    pub(crate) fn is_exists(&self) -> bool {
        matches!(self, IpError::Failed { stderr, .. } if stderr.contains("File exists"))
    }
}

/// Runs `ip <args>` to completion and returns its stdout.
///
/// Blocking, but `ip` answers in milliseconds; async callers wrap whole
/// sequences in `spawn_blocking`.
pub(crate) fn run(args: &[&str]) -> Result<String, IpError> {
    let joined = || args.join(" ");
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| IpError::Spawn {
            args: joined(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(IpError::Failed {
            args: joined(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Makes `name` an up bridge whose only IPv4 address is the CIDR's gateway.
///
/// Idempotent: an existing bridge is reused, a stale address from an
/// earlier CIDR replaced.
///
/// # Errors
/// `ip` failed, or `name` exists and is not a bridge.
pub(crate) fn ensure_bridge(name: &str, cidr: &PodCidr) -> Result<(), IpError> {
    if run(&["link", "show", "dev", name]).is_err() {
        match run(&["link", "add", "name", name, "type", "bridge"]) {
            Err(e) if !e.is_exists() => return Err(e),
            _ => {}
        }
    }
    let details = run(&["-d", "-o", "link", "show", "dev", name])?;
    if !details.split_whitespace().any(|word| word == "bridge") {
        return Err(IpError::Failed {
            args: format!("-d link show dev {name}"),
            stderr: format!("{name} exists and is not a bridge"),
        });
    }

    let wanted = format!("{}/{}", cidr.gateway(), cidr.prefix());
    let listing = run(&["-4", "-o", "addr", "show", "dev", name])?;
    let present = ipv4_addresses(&listing);
    for stale in present.iter().filter(|a| **a != wanted) {
        run(&["addr", "del", stale, "dev", name])?;
    }
    if !present.contains(&wanted) {
        match run(&["addr", "add", &wanted, "dev", name]) {
            Err(e) if !e.is_exists() => return Err(e),
            _ => {}
        }
    }
    run(&["link", "set", "dev", name, "up"])?;
    Ok(())
}

/// The `a.b.c.d/p` words following `inet` in `ip -4 -o addr show`.
fn ipv4_addresses(listing: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = listing.split_whitespace();
    while let Some(word) = words.next() {
        if word == "inet" {
            if let Some(addr) = words.next() {
                out.push(addr.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_ip_one_line_output() {
        let listing = "7: kaji0    inet 10.244.0.1/24 brd 10.244.0.255 scope global kaji0\\       valid_lft forever preferred_lft forever\n\
                       7: kaji0    inet 10.9.0.1/16 scope global kaji0\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(ipv4_addresses(listing), ["10.244.0.1/24", "10.9.0.1/16"]);
        assert!(ipv4_addresses("").is_empty());
    }
}
