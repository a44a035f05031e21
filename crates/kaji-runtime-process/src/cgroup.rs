//! One cgroup per container under a `kaji` parent, on cgroup v2 or v1.
//!
//! v2 is used when `/sys/fs/cgroup` is the unified hierarchy (it has
//! `cgroup.controllers`); otherwise v1 with the `memory` controller (and
//! `cpu` when mounted). A hybrid host's `/sys/fs/cgroup/unified` carries no
//! controllers and is ignored.
//!
//! The runtime never moves processes itself: the launch wrapper writes its
//! own pid into [`ContainerCgroup::procs_files`] before it `exec`s the
//! command, so everything the command allocates is charged.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kaji_runtime::LinuxResources;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Where cgroups live on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cgroups {
    /// The unified hierarchy; `parent` is `<root>/<name>`.
    V2 {
        /// The parent every container cgroup goes under.
        parent: PathBuf,
    },
    /// Per-controller hierarchies.
    V1 {
        /// `<memory mount>/<name>`.
        memory: PathBuf,
        /// `<cpu mount>/<name>`, when the cpu controller is mounted.
        cpu: Option<PathBuf>,
    },
}

/// A container's cgroup directories (one on v2; memory and cpu on v1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContainerCgroup {
    /// The directories, memory first.
    pub dirs: Vec<PathBuf>,
}

impl Cgroups {
    /// Finds the hierarchy under `mount` (normally `/sys/fs/cgroup`) and
    /// creates the `name` parent; `None` when cgroups cannot be used.
    pub fn detect(mount: &Path, name: &str) -> Option<Self> {
        if mount.join("cgroup.controllers").is_file() {
            let parent = mount.join(name);
            std::fs::create_dir_all(&parent).ok()?;
            // Controllers must be enabled on every level above a container's
            // cgroup; the root's may already be, or be someone else's call.
            for dir in [mount, parent.as_path()] {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu");
            }
            let enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control")).ok()?;
            return enabled
                .split_whitespace()
                .any(|c| c == "memory")
                .then_some(Cgroups::V2 { parent });
        }
        let memory = mount.join("memory");
        if !memory.join("memory.limit_in_bytes").is_file() {
            return None;
        }
        let memory = memory.join(name);
        std::fs::create_dir_all(&memory).ok()?;
        let cpu = Some(mount.join("cpu"))
            .filter(|c| c.join("cpu.shares").is_file())
            .map(|c| c.join(name))
            .filter(|c| std::fs::create_dir_all(c).is_ok());
        Some(Cgroups::V1 { memory, cpu })
    }

    /// Creates container `id`'s cgroup and applies `resources`.
    ///
    /// # Errors
    /// A directory or control file could not be written; what was created
    /// is removed again.
    pub fn create(&self, id: &str, resources: &LinuxResources) -> std::io::Result<ContainerCgroup> {
        let dirs = match self {
            Cgroups::V2 { parent } => vec![parent.join(id)],
            Cgroups::V1 { memory, cpu } => {
                let mut dirs = vec![memory.join(id)];
                dirs.extend(cpu.as_ref().map(|c| c.join(id)));
                dirs
            }
        };
        let cgroup = ContainerCgroup { dirs };
        let result = cgroup
            .dirs
            .iter()
            .try_for_each(std::fs::create_dir_all)
            .and_then(|()| self.apply(&cgroup, resources));
        if let Err(e) = result {
            let _ = cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    fn apply(&self, cgroup: &ContainerCgroup, r: &LinuxResources) -> std::io::Result<()> {
        let write = |dir: &Path, file: &str, value: String| {
            std::fs::write(dir.join(file), value).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("writing {}: {e}", dir.join(file).display()),
                )
            })
        };
        let period = r.cpu_period.unwrap_or(100_000);
        match self {
            Cgroups::V2 { .. } => {
                let dir = &cgroup.dirs[0];
                if let Some(limit) = r.memory_limit_bytes {
                    write(dir, "memory.max", limit.to_string())?;
                    if dir.join("memory.swap.max").exists() {
                        write(dir, "memory.swap.max", "0".to_owned())?;
                    }
                }
                if dir.join("cpu.max").exists() {
                    if let Some(shares) = r.cpu_shares {
                        write(dir, "cpu.weight", shares_to_weight(shares).to_string())?;
                    }
                    if let Some(quota) = r.cpu_quota.filter(|q| *q > 0) {
                        write(dir, "cpu.max", format!("{quota} {period}"))?;
                    }
                }
            }
            Cgroups::V1 { .. } => {
                let memory = &cgroup.dirs[0];
                if let Some(limit) = r.memory_limit_bytes {
                    write(memory, "memory.limit_in_bytes", limit.to_string())?;
                    // With swap on, memory+swap must be capped too or the limit only slows it.
                    if memory.join("memory.memsw.limit_in_bytes").exists() {
                        write(memory, "memory.memsw.limit_in_bytes", limit.to_string())?;
                    }
                }
                if let Some(cpu) = cgroup.dirs.get(1) {
                    if let Some(shares) = r.cpu_shares {
                        write(cpu, "cpu.shares", shares.to_string())?;
                    }
                    if let Some(quota) = r.cpu_quota.filter(|q| *q > 0) {
                        write(cpu, "cpu.cfs_period_us", period.to_string())?;
                        write(cpu, "cpu.cfs_quota_us", quota.to_string())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// CRI's conversion from cpu shares (2..262144) to a v2 weight (1..10000).
fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

impl ContainerCgroup {
    /// The files a process writes its pid into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Pids currently in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process in the cgroup, including any that left the
    /// container's process group.
    pub fn kill_all(&self) {
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Whether the kernel's OOM killer killed a process in this cgroup.
    /// `exit_code` backs up v1 kernels without an `oom_kill` counter, where
    /// a hit limit plus a SIGKILL exit is taken as an OOM kill.
    pub fn oom_killed(&self, exit_code: i32) -> bool {
        let Some(dir) = self.dirs.first() else {
            return false;
        };
        let counter = |file: &str, key: &str| {
            let text = std::fs::read_to_string(dir.join(file)).ok()?;
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        };
        if let Some(n) = counter("memory.events", "oom_kill") {
            return n > 0;
        }
        if let Some(n) = counter("memory.oom_control", "oom_kill") {
            return n > 0;
        }
        let failcnt = std::fs::read_to_string(dir.join("memory.failcnt"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        exit_code == 137 && failcnt.is_some_and(|n| n > 0)
    }

    /// Kills what is left and removes the directories; succeeds when they
    /// are already gone.
    ///
    /// # Errors
    /// A directory stayed busy for two seconds.
    pub fn remove(&self) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        for dir in &self.dirs {
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => {
                        self.kill_all();
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_map_onto_v2_weights_as_cri_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
    }

    #[test]
    fn a_v1_hierarchy_gets_memory_and_cpu_dirs_with_limits() {
        let mount = tempfile::tempdir().unwrap();
        for (dir, file) in [("memory", "memory.limit_in_bytes"), ("cpu", "cpu.shares")] {
            std::fs::create_dir_all(mount.path().join(dir)).unwrap();
            std::fs::write(mount.path().join(dir).join(file), "").unwrap();
        }
        let cgroups = Cgroups::detect(mount.path(), "kaji").unwrap();
        let resources = LinuxResources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: None,
            memory_limit_bytes: Some(64 << 20),
        };
        let cg = cgroups.create("c1", &resources).unwrap();
        let read = |p: &str| std::fs::read_to_string(mount.path().join(p)).unwrap();
        assert_eq!(read("memory/kaji/c1/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("cpu/kaji/c1/cpu.shares"), "512");
        assert_eq!(read("cpu/kaji/c1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/kaji/c1/cpu.cfs_period_us"), "100000");
        std::fs::write(
            mount.path().join("memory/kaji/c1/memory.oom_control"),
            "oom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed(0));
    }

    #[test]
    fn a_v2_oom_kill_is_read_from_memory_events() {
        let dir = tempfile::tempdir().unwrap();
        let cg = ContainerCgroup {
            dirs: vec![dir.path().to_owned()],
        };
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n").unwrap();
        assert!(!cg.oom_killed(137));
        std::fs::write(&events, "oom 1\noom_kill 2\n").unwrap();
        assert!(cg.oom_killed(1));
    }
}
