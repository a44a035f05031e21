//! Turning a [`ContainerConfig`] into a host command: the argv, the env,
//! the working directory, the mounts, and the wrapper that puts the process
//! into its namespaces and cgroup before it `exec`s the command.
//!
//! Isolated (root): `[nsenter --net=<netns>] unshare --mount --propagation
//! private sh -c <setup> kaji-init <argv>`, where the setup script joins the
//! cgroup, bind-mounts each volume (read-only remount where asked), changes
//! to the working directory and `exec`s the command, so the command keeps
//! the pid (and process group) the runtime spawned. A setup failure exits
//! 125 after writing its reason to a marker file, which the runtime reports
//! as `ContainerCannotRun`.
//!
//! Either way `setpriv --pdeathsig KILL` comes first where util-linux has
//! it: a container never outlives the agent that started it, since a
//! restarted agent could not reattach to it anyway.
//!
//! Not isolated: the command runs directly; a mount whose container path
//! does not exist becomes a symlink to its host path, others are skipped.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;

use kaji_runtime::{ContainerConfig, Mount};
use tokio::process::Command;

use crate::cgroup::ContainerCgroup;
use crate::host::{find_executable, quote, Host, DEFAULT_PATH};

/// Why a container cannot start, before any process exists.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CannotRun(pub String);

/// Everything [`prepare`] needs.
pub(crate) struct Plan<'a> {
    pub host: &'a Host,
    /// Private mount namespace with bind mounts (root).
    pub isolate_mounts: bool,
    pub config: &'a ContainerConfig,
    /// The working directory when the config names none.
    pub default_dir: &'a Path,
    pub cgroup: Option<&'a ContainerCgroup>,
    /// The sandbox's network namespace, when it has one.
    pub netns: Option<&'a Path>,
    /// Where the setup script writes why it failed.
    pub marker: &'a Path,
    /// What the setup script creates just before it `exec`s the command.
    pub ready: &'a Path,
}

/// A command ready to spawn.
pub(crate) struct Prepared {
    pub command: Command,
    /// Whether a setup script runs first (and will create `Plan::ready`).
    pub wrapped: bool,
}

/// The command line: `command` then `args`, or `args` alone.
pub(crate) fn argv(config: &ContainerConfig) -> Result<Vec<String>, CannotRun> {
    let argv: Vec<String> = config.command.iter().chain(&config.args).cloned().collect();
    if argv.is_empty() {
        return Err(CannotRun(
            "container has no command; the process runtime does not pull images, so command is required"
                .to_owned(),
        ));
    }
    Ok(argv)
}

/// The container's env exactly as given, plus a default PATH if it sets none.
pub(crate) fn env(config: &ContainerConfig) -> Vec<(String, String)> {
    let mut env = config.envs.clone();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    env
}

/// The working directory inside the container.
pub(crate) fn working_dir(config: &ContainerConfig, default_dir: &Path) -> PathBuf {
    if config.working_dir.is_empty() {
        default_dir.to_owned()
    } else {
        PathBuf::from(&config.working_dir)
    }
}

/// Where `path` inside the container is on the host, given its mounts.
pub(crate) fn host_view(path: &Path, mounts: &[Mount]) -> PathBuf {
    mounts
        .iter()
        .filter_map(|m| Some((m, path.strip_prefix(&m.container_path).ok()?)))
        .max_by_key(|(m, _)| m.container_path.components().count())
        .map(|(m, rest)| m.host_path.join(rest))
        .unwrap_or_else(|| path.to_owned())
}

/// Prepares mounts and checks the command; returns what to spawn.
/// Paths it creates on the host are appended to `created` (deepest last).
///
/// # Errors
/// [`CannotRun`] for a missing command, binary, working directory or
/// mount source, or a mount point that cannot be made.
pub(crate) fn prepare(plan: &Plan<'_>, created: &mut Vec<PathBuf>) -> Result<Prepared, CannotRun> {
    let config = plan.config;
    let argv = argv(config)?;
    let env = env(config);
    for m in &config.mounts {
        if !m.container_path.is_absolute() || !m.host_path.is_absolute() {
            return Err(CannotRun(format!(
                "mount {} -> {}: paths must be absolute",
                m.host_path.display(),
                m.container_path.display()
            )));
        }
        if !m.host_path.exists() {
            return Err(CannotRun(format!(
                "mount source {} does not exist",
                m.host_path.display()
            )));
        }
        if plan.isolate_mounts {
            make_mount_point(m, created)?;
        } else {
            link_mount(m, created);
        }
    }
    let mounts: &[Mount] = if plan.isolate_mounts {
        &config.mounts
    } else {
        &[]
    };
    let wd = working_dir(config, plan.default_dir);
    if !host_view(&wd, mounts).is_dir() {
        return Err(CannotRun(format!(
            "working directory {} does not exist",
            wd.display()
        )));
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or("", |(_, v)| v);
    let Some(program) = find_executable(&argv[0], path, |p| host_view(p, mounts)) else {
        return Err(CannotRun(format!(
            "exec: {:?}: executable file not found in $PATH",
            argv[0]
        )));
    };
    let wrapped = plan.isolate_mounts || plan.cgroup.is_some() || plan.netns.is_some();
    let mut cmd = if wrapped {
        let mut words: Vec<OsString> = Vec::new();
        if let Some(setpriv) = &plan.host.setpriv {
            words.push(setpriv.into());
            words.extend(["--pdeathsig", "KILL", "--"].map(OsString::from));
        }
        if let (Some(netns), Some(nsenter)) = (plan.netns, &plan.host.nsenter) {
            words.push(nsenter.into());
            words.push(format!("--net={}", netns.display()).into());
        }
        if let (true, Some(unshare)) = (plan.isolate_mounts, &plan.host.unshare) {
            words.push(unshare.into());
            words.extend(["--mount", "--propagation", "private"].map(OsString::from));
        }
        words.push(plan.host.sh.clone().into());
        words.push("-c".into());
        words.push(setup_script(plan, &wd, &env).into());
        words.push("kaji-init".into());
        words.extend(argv.iter().map(OsString::from));
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]).current_dir(plan.default_dir);
        cmd
    } else if let Some(setpriv) = &plan.host.setpriv {
        let mut cmd = Command::new(setpriv);
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(program)
            .args(&argv[1..])
            .current_dir(&wd);
        cmd
    } else {
        let mut cmd = Command::new(program);
        cmd.arg0(&argv[0]).args(&argv[1..]).current_dir(&wd);
        cmd
    };
    cmd.env_clear()
        .envs(env)
        .stdin(if config.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a stop signals everything it forked.
        .process_group(0);
    Ok(Prepared {
        command: cmd,
        wrapped,
    })
}

/// The `sh` script run before the command, inside the new namespaces.
fn setup_script(plan: &Plan<'_>, wd: &Path, env: &[(String, String)]) -> String {
    let mut s = format!(
        // Written aside and renamed, so the runtime never reads it half-written.
        "fail() {{ printf 'kaji: %s\\n' \"$1\" >&2; printf '%s' \"$1\" > {tmp}; mv -f {tmp} {marker}; exit 125; }}\n",
        tmp = quote(plan.marker.with_extension("tmp")),
        marker = quote(plan.marker),
    );
    for procs in plan
        .cgroup
        .map(ContainerCgroup::procs_files)
        .unwrap_or_default()
    {
        let why = quote(format!("cannot join cgroup {}", procs.display()));
        s += &format!("echo $$ > {} || fail {why}\n", quote(&procs));
    }
    if let (true, Some(mount)) = (plan.isolate_mounts, &plan.host.mount) {
        for m in &plan.config.mounts {
            let (h, c) = (quote(&m.host_path), quote(&m.container_path));
            let why = quote(format!(
                "cannot mount {} at {}",
                m.host_path.display(),
                m.container_path.display()
            ));
            s += &format!("{} --bind {h} {c} || fail {why}\n", quote(mount));
            if m.read_only {
                s += &format!("{} -o remount,bind,ro {c} || fail {why}\n", quote(mount));
            }
        }
    }
    let why = quote(format!("working directory {} does not exist", wd.display()));
    s += &format!("cd {} || fail {why}\n", quote(wd));
    // sh exports PWD (and cd OLDPWD) to what it execs; the env must be the pod's.
    if !env.iter().any(|(k, _)| k == "PWD" || k == "OLDPWD") {
        s += "unset PWD OLDPWD\n";
    }
    s += &format!(": > {}\nexec \"$@\"\n", quote(plan.ready));
    s
}

/// Creates the mount point for `m` (a directory, or an empty file for a
/// file mount) when missing. It is created on the host, since the mount
/// namespace shares the host's tree; the bind mount itself stays private.
fn make_mount_point(m: &Mount, created: &mut Vec<PathBuf>) -> Result<(), CannotRun> {
    let fail = |e: std::io::Error| {
        CannotRun(format!(
            "cannot create mount point {}: {e}",
            m.container_path.display()
        ))
    };
    if m.container_path.exists() {
        return Ok(());
    }
    if m.host_path.is_dir() {
        create_dirs(&m.container_path, created).map_err(fail)?;
    } else {
        if let Some(parent) = m.container_path.parent() {
            create_dirs(parent, created).map_err(fail)?;
        }
        std::fs::write(&m.container_path, b"").map_err(fail)?;
        created.push(m.container_path.clone());
    }
    Ok(())
}

/// Without a mount namespace: a symlink at the container path, if free.
fn link_mount(m: &Mount, created: &mut Vec<PathBuf>) {
    let at = &m.container_path;
    if let Ok(existing) = std::fs::read_link(at) {
        if existing == m.host_path {
            return;
        }
    }
    if at.symlink_metadata().is_ok() {
        tracing::warn!(path = %at.display(), "container path exists and mounts are not isolated; mount skipped");
        return;
    }
    let result = at
        .parent()
        .map_or(Ok(()), |p| create_dirs(p, created))
        .and_then(|()| symlink(&m.host_path, at));
    match result {
        Ok(()) => created.push(at.clone()),
        Err(e) => tracing::warn!(path = %at.display(), error = %e, "mount skipped: cannot link"),
    }
}

/// `create_dir_all` that records each directory it made, outermost first.
fn create_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir.to_path_buf();
    while !cur.exists() {
        missing.push(cur.clone());
        if !cur.pop() || cur.components().next_back() == Some(Component::RootDir) {
            break;
        }
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(&d) {
            Ok(()) => created.push(d),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes what [`prepare`] created, deepest first; a path no longer
/// empty (or already gone) is left alone.
pub(crate) fn remove_created(created: &[PathBuf]) {
    for path in created.iter().rev() {
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        let _ = if meta.is_dir() {
            std::fs::remove_dir(path)
        } else if meta.is_symlink() || meta.len() == 0 {
            std::fs::remove_file(path)
        } else {
            Ok(())
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(c: &str, h: &str) -> Mount {
        Mount {
            container_path: c.into(),
            host_path: h.into(),
            read_only: false,
        }
    }

    #[test]
    fn command_then_args_make_the_argv_and_empty_is_refused() {
        let mut c = ContainerConfig {
            command: vec!["sh".into()],
            args: vec!["-c".into(), "true".into()],
            ..ContainerConfig::default()
        };
        assert_eq!(argv(&c).unwrap(), ["sh", "-c", "true"]);
        c.command.clear();
        assert_eq!(argv(&c).unwrap(), ["-c", "true"]);
        c.args.clear();
        assert!(argv(&c).unwrap_err().0.contains("command is required"));
    }

    #[test]
    fn paths_inside_mounts_are_seen_through_the_deepest_mount() {
        let mounts = [mount("/data", "/h/data"), mount("/data/cache", "/h/cache")];
        assert_eq!(
            host_view(Path::new("/data/x"), &mounts),
            Path::new("/h/data/x")
        );
        assert_eq!(
            host_view(Path::new("/data/cache/y"), &mounts),
            Path::new("/h/cache/y")
        );
        assert_eq!(host_view(Path::new("/datum"), &mounts), Path::new("/datum"));
    }

    #[test]
    fn unisolated_mounts_become_symlinks_that_are_removed_again() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("vol");
        std::fs::create_dir(&host).unwrap();
        let at = dir.path().join("a/b/data");
        let mut created = Vec::new();
        link_mount(
            &mount(at.to_str().unwrap(), host.to_str().unwrap()),
            &mut created,
        );
        assert_eq!(std::fs::read_link(&at).unwrap(), host);
        assert_eq!(
            created,
            [dir.path().join("a"), dir.path().join("a/b"), at.clone()]
        );
        remove_created(&created);
        assert!(!dir.path().join("a").exists());
        assert!(host.is_dir(), "the volume itself is untouched");
    }

    #[test]
    fn the_setup_script_joins_mounts_changes_dir_and_execs() {
        let host = Host {
            root: true,
            sh: "/bin/sh".into(),
            unshare: Some("/usr/bin/unshare".into()),
            nsenter: Some("/usr/bin/nsenter".into()),
            mount: Some("/bin/mount".into()),
            ip: None,
            setpriv: None,
        };
        let config = ContainerConfig {
            mounts: vec![Mount {
                read_only: true,
                ..mount("/data", "/h")
            }],
            ..ContainerConfig::default()
        };
        let cgroup = ContainerCgroup {
            dirs: vec!["/cg/mem/kaji/c1".into()],
        };
        let plan = Plan {
            host: &host,
            isolate_mounts: true,
            config: &config,
            default_dir: Path::new("/w"),
            cgroup: Some(&cgroup),
            netns: None,
            marker: Path::new("/m"),
            ready: Path::new("/r"),
        };
        let s = setup_script(&plan, Path::new("/w"), &[]);
        assert!(s.contains("echo $$ > '/cg/mem/kaji/c1/cgroup.procs' || fail"));
        assert!(s.contains("'/bin/mount' --bind '/h' '/data' || fail"));
        assert!(s.contains("'/bin/mount' -o remount,bind,ro '/data' || fail"));
        assert!(s.contains("cd '/w' || fail"));
        assert!(s.ends_with("unset PWD OLDPWD\n: > '/r'\nexec \"$@\"\n"));
    }
}
