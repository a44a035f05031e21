//! Named network namespaces (`ip netns add|delete`), one per pod sandbox.
//!
//! A named namespace is a bind mount under [`NETNS_DIR`]; it outlives the
//! processes in it until [`delete`] unmounts it, which is what lets the
//! network be attached before any container starts.

use std::path::PathBuf;

use crate::iproute::{self, IpError};

/// Where `ip netns` mounts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Why a namespace could not be created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name is empty, too long, or not a plain file name.
    #[error("invalid network namespace name {0:?}")]
    InvalidName(String),
    /// `ip netns` failed.
    #[error("network namespace {name}: {source}")]
    Ip {
        /// The namespace's name.
        name: String,
        /// The underlying cause.
        #[source]
        source: IpError,
    },
}

/// Where the namespace called `name` is (or would be) mounted.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Creates the named namespace and returns its path; if it already exists,
/// returns its path (a retried sandbox creation reuses it).
///
/// # Errors
/// [`NetnsError::InvalidName`], or `ip netns add` failed (not root?).
pub fn create(name: &str) -> Result<PathBuf, NetnsError> {
    validate(name)?;
    let path = path(name);
    if path.exists() {
        return Ok(path);
    }
    match iproute::run(&["netns", "add", name]) {
        Ok(_) => Ok(path),
        // Lost a race with another creator: the namespace is there all the same.
        Err(e) if e.is_exists() => Ok(path),
        Err(source) => Err(NetnsError::Ip {
            name: name.to_string(),
            source,
        }),
    }
}

/// Deletes the named namespace; succeeds if it does not exist.
///
/// Interfaces inside it (a pod's veth end) go with it once no process
/// holds it open.
///
/// # Errors
/// [`NetnsError::InvalidName`], or `ip netns delete` failed.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    validate(name)?;
    if !path(name).exists() {
        return Ok(());
    }
    match iproute::run(&["netns", "delete", name]) {
        Ok(_) => Ok(()),
        Err(_) if !path(name).exists() => Ok(()),
        Err(source) => Err(NetnsError::Ip {
            name: name.to_string(),
            source,
        }),
    }
}

/// The named namespaces holding the far end of a veth enslaved to `bridge`:
/// the pods attached to it, whoever attached them.
///
/// # Errors
/// `ip` failed (no such bridge, not root) or printed something unreadable.
pub fn attached_to(bridge: &str) -> Result<Vec<String>, IpError> {
    let links = iproute::run(&["-j", "link", "show", "master", bridge])?;
    let namespaces = iproute::run(&["-j", "netns", "list"])?;
    Ok(names_of_peers(&links, &namespaces))
}

/// Matches the `link_netnsid` of each bridge port against the ids of
/// `ip -j netns list`; a port without a peer namespace is skipped.
fn names_of_peers(links_json: &str, netns_json: &str) -> Vec<String> {
    let parse = |s: &str| serde_json::from_str::<Vec<serde_json::Value>>(s).unwrap_or_default();
    let ids: Vec<i64> = parse(links_json)
        .iter()
        .filter_map(|l| l.get("link_netnsid")?.as_i64())
        .collect();
    parse(netns_json)
        .iter()
        .filter(|n| {
            n.get("id")
                .and_then(|v| v.as_i64())
                .is_some_and(|id| ids.contains(&id))
        })
        .filter_map(|n| Some(n.get("name")?.as_str()?.to_string()))
        .collect()
}

/// SIGKILLs every process inside the named namespace, then deletes it.
///
/// For namespaces nobody knows any more (their runtime was SIGKILLed and
/// its records lost): nothing would ever stop those processes, and the
/// addresses they hold would be handed out again.
///
/// # Errors
/// As for [`delete`].
pub fn kill_and_delete(name: &str) -> Result<(), NetnsError> {
    validate(name)?;
    if let Ok(pids) = iproute::run(&["netns", "pids", name]) {
        for pid in pids.split_whitespace().filter(|p| p.parse::<u32>().is_ok()) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    delete(name)
}

fn validate(name: &str) -> Result<(), NetnsError> {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.len() > 200 || !plain || name == "." || name == ".." {
        return Err(NetnsError::InvalidName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        for name in ["", ".", "..", "a/b", "x y", &"n".repeat(201)] {
            assert!(
                matches!(create(name), Err(NetnsError::InvalidName(_))),
                "{name:?}"
            );
            assert!(matches!(delete(name), Err(NetnsError::InvalidName(_))));
        }
    }

    #[test]
    fn deleting_a_namespace_that_does_not_exist_succeeds() {
        delete("kaji-cni-test-never-created").unwrap();
    }

    #[test]
    fn peers_are_matched_by_netns_id() {
        let links = r#"[{"ifname":"veth1","link_netnsid":0},{"ifname":"veth2","link_netnsid":2},{"ifname":"dummy"}]"#;
        let namespaces = r#"[{"name":"kaji-b","id":2},{"name":"other","id":1},{"name":"kaji-a","id":0},{"name":"noid"}]"#;
        assert_eq!(names_of_peers(links, namespaces), ["kaji-b", "kaji-a"]);
        assert!(names_of_peers("", namespaces).is_empty());
    }

    #[test]
    fn a_namespace_lives_under_run_netns() {
        assert_eq!(path("kaji-abc"), PathBuf::from("/run/netns/kaji-abc"));
    }
}
