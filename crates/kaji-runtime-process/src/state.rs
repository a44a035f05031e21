//! What the runtime writes to its state directory, so a restarted agent
//! still finds its sandboxes, their network namespaces, cgroups and
//! processes, and can clean them up.
//!
//! Layout under the root directory:
//!
//! ```text
//! <root>/<sandbox-id>/sandbox.json
//! <root>/<sandbox-id>/containers/<container-id>.json
//! <root>/<sandbox-id>/containers/<container-id>/   default working directory
//! ```
//!
//! Records are rewritten whole (write to a temporary file, then rename) on
//! every state change, so a crash leaves the old or the new record.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use kaji_runtime::{
    ContainerMetadata, ContainerState, ContainerStatus, PodSandboxMetadata, PodSandboxStatus,
    SandboxState,
};
use serde::{Deserialize, Serialize};

/// A sandbox as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub created_at: DateTime<Utc>,
    pub ready: bool,
    pub ip: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub log_directory: PathBuf,
    /// The network namespace's name under `/run/netns`, once made.
    pub netns: Option<String>,
    /// Whether the pod network was attached (and so must be detached).
    pub attached: bool,
}

impl SandboxRecord {
    pub fn status(&self) -> PodSandboxStatus {
        PodSandboxStatus {
            id: self.id.clone(),
            metadata: PodSandboxMetadata {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                uid: self.uid.clone(),
                attempt: self.attempt,
            },
            state: if self.ready {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            created_at: self.created_at,
            ip: self.ip,
            labels: self.labels.clone(),
        }
    }
}

/// A container as persisted: its status plus what is needed to find and
/// kill its processes after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub message: String,
    pub log_path: PathBuf,
    /// The main process (also its process group), while one was started.
    pub pid: Option<i32>,
    /// The main process' start time in clock ticks (`/proc/<pid>/stat`
    /// field 22), so a reused pid is never mistaken for it.
    pub pid_start: Option<u64>,
    pub cgroup_dirs: Vec<PathBuf>,
    /// Symlinks and mount points this container created on the host,
    /// removed with it.
    pub created_paths: Vec<PathBuf>,
}

impl ContainerRecord {
    pub fn status(&self) -> ContainerStatus {
        ContainerStatus {
            id: self.id.clone(),
            sandbox_id: self.sandbox_id.clone(),
            metadata: ContainerMetadata {
                name: self.name.clone(),
                attempt: self.attempt,
            },
            state: self.state(),
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            message: self.message.clone(),
            image: self.image.clone(),
            log_path: self.log_path.clone(),
        }
    }

    pub fn state(&self) -> ContainerState {
        match self.state.as_str() {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "exited" => ContainerState::Exited,
            _ => ContainerState::Unknown,
        }
    }

    pub fn set_state(&mut self, state: ContainerState) {
        self.state = match state {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
            ContainerState::Unknown => "unknown",
        }
        .to_owned();
    }

    /// Records the end of the process.
    pub fn exit(&mut self, exit_code: i32, reason: &str, message: String) {
        self.set_state(ContainerState::Exited);
        self.finished_at = Some(Utc::now());
        self.exit_code = Some(exit_code);
        self.reason = reason.to_owned();
        self.message = message;
    }
}

pub(crate) fn sandbox_dir(root: &Path, sandbox_id: &str) -> PathBuf {
    root.join(sandbox_id)
}

pub(crate) fn container_file(root: &Path, sandbox_id: &str, id: &str) -> PathBuf {
    root.join(sandbox_id)
        .join("containers")
        .join(format!("{id}.json"))
}

/// The default working directory of a container.
pub(crate) fn container_dir(root: &Path, sandbox_id: &str, id: &str) -> PathBuf {
    root.join(sandbox_id).join("containers").join(id)
}

/// Writes `value` as JSON to `path` atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable runtime record");
            None
        }
    }
}

/// Every record under `root`; unreadable ones are skipped with a warning.
pub(crate) fn load(root: &Path) -> (Vec<SandboxRecord>, Vec<ContainerRecord>) {
    let mut sandboxes = Vec::new();
    let mut containers = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return (sandboxes, containers);
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(sandbox) = read_json::<SandboxRecord>(&dir.join("sandbox.json")) else {
            continue;
        };
        if let Ok(files) = std::fs::read_dir(dir.join("containers")) {
            for file in files.flatten() {
                let path = file.path();
                if path.extension().is_some_and(|e| e == "json") {
                    containers.extend(read_json::<ContainerRecord>(&path));
                }
            }
        }
        sandboxes.push(sandbox);
    }
    (sandboxes, containers)
}

/// The start time of `pid` in clock ticks since boot, if it is alive (and
/// not a zombie).
pub(crate) fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    // Field 22 overall is index 19 after the pid and name.
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_state_directory() {
        let root = tempfile::tempdir().unwrap();
        let sandbox = SandboxRecord {
            id: "sb1".to_owned(),
            name: "web".to_owned(),
            namespace: "default".to_owned(),
            uid: "u".to_owned(),
            attempt: 1,
            created_at: Utc::now(),
            ready: true,
            ip: Some("10.0.0.2".parse().unwrap()),
            labels: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
            log_directory: PathBuf::from("/var/log/pods/x"),
            netns: Some("kaji-sb1".to_owned()),
            attached: true,
        };
        std::fs::create_dir_all(root.path().join("sb1/containers")).unwrap();
        write_json(&root.path().join("sb1/sandbox.json"), &sandbox).unwrap();
        let mut container = ContainerRecord {
            id: "c1".to_owned(),
            sandbox_id: "sb1".to_owned(),
            name: "app".to_owned(),
            attempt: 0,
            image: "img".to_owned(),
            state: String::new(),
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: String::new(),
            message: String::new(),
            log_path: PathBuf::from("/l"),
            pid: Some(42),
            pid_start: Some(7),
            cgroup_dirs: vec![],
            created_paths: vec![],
        };
        container.set_state(ContainerState::Running);
        write_json(&container_file(root.path(), "sb1", "c1"), &container).unwrap();
        std::fs::write(root.path().join("stray"), "not a sandbox").unwrap();
        let (sandboxes, containers) = load(root.path());
        assert_eq!(sandboxes.len(), 1);
        assert_eq!(sandboxes[0].status().state, SandboxState::Ready);
        assert_eq!(sandboxes[0].status().metadata.attempt, 1);
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0].state(), ContainerState::Running);
        assert_eq!(containers[0].pid, Some(42));
    }

    #[test]
    fn process_start_tells_live_processes_from_gone_ones() {
        let me = std::process::id() as i32;
        assert!(process_start(me).is_some());
        assert_eq!(process_start(me), process_start(me));
        assert_eq!(process_start(i32::MAX), None);
    }
}
