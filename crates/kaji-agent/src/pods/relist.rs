//! The relister (kubelet's PLEG): lists the node's sandboxes and containers
//! every period and wakes the worker of each pod whose runtime state
//! changed, so an exited container is noticed within a period. It also
//! collects orphans: sandboxes and directories of pods the API no longer
//! has (deleted while the agent was away).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use kaji_runtime::{ContainerState, SandboxState};
use tokio::time::{Instant, MissedTickBehavior};

use crate::context::NodeContext;

/// Relists the node's runtime until the task is dropped.
pub(crate) async fn run(ctx: Arc<NodeContext>) {
    let mut ticker = tokio::time::interval(ctx.timings.relist);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut last_gc: Option<Instant> = None;
    loop {
        ticker.tick().await;
        match relist_once(&ctx, &last).await {
            Ok(fingerprints) => last = fingerprints,
            Err(error) => tracing::warn!(node = %ctx.name, %error, "relisting the runtime failed"),
        }
        if ctx.pods_synced.load(Ordering::Acquire)
            && last_gc.is_none_or(|t| t.elapsed() >= ctx.timings.orphan_gc)
        {
            last_gc = Some(Instant::now());
            collect_orphans(&ctx).await;
        }
    }
}

/// One relist: a fingerprint of each pod's runtime state; wakes the
/// workers of pods whose fingerprint changed.
async fn relist_once(
    ctx: &NodeContext,
    last: &HashMap<String, u64>,
) -> kaji_runtime::Result<HashMap<String, u64>> {
    let sandboxes = ctx.runtime.list_pod_sandboxes().await?;
    let containers = ctx.runtime.list_containers(None).await?;
    let uid_of: HashMap<&str, &str> = sandboxes
        .iter()
        .map(|s| (s.id.as_str(), s.metadata.uid.as_str()))
        .collect();
    let mut parts: HashMap<&str, Vec<(String, u8)>> = HashMap::new();
    for s in &sandboxes {
        let state = u8::from(s.state == SandboxState::Ready);
        parts
            .entry(s.metadata.uid.as_str())
            .or_default()
            .push((s.id.clone(), state));
    }
    for c in &containers {
        let Some(uid) = uid_of.get(c.sandbox_id.as_str()) else {
            continue;
        };
        let state = match c.state {
            ContainerState::Created => 2,
            ContainerState::Running => 3,
            ContainerState::Exited => 4,
            ContainerState::Unknown => 5,
        };
        parts.entry(uid).or_default().push((c.id.clone(), state));
    }
    let mut fingerprints = HashMap::with_capacity(parts.len());
    for (uid, mut items) in parts {
        items.sort_unstable();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        items.hash(&mut h);
        fingerprints.insert(uid.to_string(), h.finish());
    }
    for (uid, fp) in &fingerprints {
        if last.get(uid) != Some(fp) {
            ctx.wake(uid);
        }
    }
    for uid in last.keys() {
        if !fingerprints.contains_key(uid) {
            ctx.wake(uid);
        }
    }
    Ok(fingerprints)
}

/// Removes sandboxes, pod directories and log directories of pods that
/// have no worker: the API no longer has them.
async fn collect_orphans(ctx: &NodeContext) {
    let known: HashSet<String> = {
        let workers = ctx.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.keys().cloned().collect()
    };
    match ctx.runtime.list_pod_sandboxes().await {
        Ok(sandboxes) => {
            for s in sandboxes
                .iter()
                .filter(|s| !known.contains(&s.metadata.uid))
            {
                tracing::info!(node = %ctx.name, sandbox = %s.id, pod = %s.metadata.name, "removing the sandbox of a pod that no longer exists");
                if let Err(error) = ctx.runtime.stop_pod_sandbox(&s.id).await {
                    tracing::warn!(sandbox = %s.id, %error, "stopping an orphaned sandbox failed");
                    continue;
                }
                if let Err(error) = ctx.runtime.remove_pod_sandbox(&s.id).await {
                    tracing::warn!(sandbox = %s.id, %error, "removing an orphaned sandbox failed");
                }
            }
        }
        Err(error) => tracing::warn!(node = %ctx.name, %error, "listing sandboxes failed"),
    }
    // Re-read after the runtime calls: a pod may have arrived meanwhile.
    let known: HashSet<String> = {
        let workers = ctx.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.keys().cloned().collect()
    };
    remove_unknown_dirs(&ctx.root.join("pods"), &known, |name| {
        Some(name.to_string())
    });
    // Log directories are `<namespace>_<name>_<uid>`.
    remove_unknown_dirs(&ctx.logs_root(), &known, |name| {
        name.rsplit_once('_').map(|(_, uid)| uid.to_string())
    });
}

fn remove_unknown_dirs(
    dir: &std::path::Path,
    known: &HashSet<String>,
    uid_of: impl Fn(&str) -> Option<String>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(uid) = uid_of(&name).filter(|u| looks_like_uid(u)) {
            if !known.contains(&uid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Whether `s` is shaped like a pod uid (an RFC 4122 UUID), so that only
/// the agent's own directories are ever collected, whatever shares the
/// parent directory.
fn looks_like_uid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uid_shaped_directories_are_collected() {
        let tmp = tempfile::tempdir().unwrap();
        let uid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let other = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
        for name in [uid, other, "not-a-pod", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"] {
            std::fs::create_dir(tmp.path().join(name)).unwrap();
        }
        let known = HashSet::from([uid.to_string()]);
        remove_unknown_dirs(tmp.path(), &known, |n| Some(n.to_string()));
        assert!(tmp.path().join(uid).exists());
        assert!(!tmp.path().join(other).exists());
        assert!(tmp.path().join("not-a-pod").exists());
        assert!(tmp.path().join("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6").exists());
    }
}
