//! The host tools the runtime drives: who we are, where `sh`, `unshare`,
//! `nsenter`, `mount` and `ip` live, network namespaces, signals and shell
//! quoting. Namespaces are entered only through these binaries: the
//! workspace forbids `unsafe`, and with it `pre_exec` and `setns`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use kaji_runtime::{Result, RuntimeError};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Where the runtime looks for host tools, besides the agent's own PATH.
const TOOL_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// PATH for containers whose env sets none (containerd's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What this host lets the runtime do.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// Effective uid 0.
    pub root: bool,
    pub sh: PathBuf,
    pub unshare: Option<PathBuf>,
    pub nsenter: Option<PathBuf>,
    pub mount: Option<PathBuf>,
    pub ip: Option<PathBuf>,
    /// util-linux `setpriv`, to give containers a parent-death signal.
    pub setpriv: Option<PathBuf>,
}

impl Host {
    pub fn detect() -> Self {
        Host {
            root: nix::unistd::geteuid().is_root(),
            sh: find_tool("sh").unwrap_or_else(|| PathBuf::from("/bin/sh")),
            unshare: find_tool("unshare"),
            nsenter: find_tool("nsenter"),
            mount: find_tool("mount"),
            ip: find_tool("ip"),
            setpriv: find_tool("setpriv"),
        }
    }

    /// Whether containers can get a private mount namespace with bind mounts.
    pub fn can_isolate_mounts(&self) -> bool {
        self.root && self.unshare.is_some() && self.nsenter.is_some() && self.mount.is_some()
    }

    /// Whether sandboxes can get network namespaces.
    pub fn can_make_netns(&self) -> bool {
        self.root && self.ip.is_some() && self.nsenter.is_some()
    }
}

/// Finds a host tool on the agent's PATH or in the usual directories.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(TOOL_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Finds `name` the way `exec` would, on `path` (a PATH value), seeing
/// each candidate through `view` (how the container's mounts map paths).
pub(crate) fn find_executable(
    name: &str,
    path: &str,
    view: impl Fn(&Path) -> PathBuf,
) -> Option<PathBuf> {
    if name.contains('/') {
        return view(Path::new(name)).is_file().then(|| PathBuf::from(name));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| view(p).is_file())
}

/// Quotes a word for `sh`.
pub(crate) fn quote(word: impl AsRef<OsStr>) -> String {
    let text = String::from_utf8_lossy(word.as_ref().as_bytes());
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// An exit status as Kubernetes reports it: the code, or 128 + signal.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// Signals a process group; a group that is gone is not an error.
pub(crate) fn signal_group(pgid: i32, signal: Signal) {
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// The path of a named network namespace.
pub(crate) fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// The network namespace name of a sandbox.
pub(crate) fn netns_name(sandbox_id: &str) -> String {
    format!("kaji-{}", &sandbox_id[..sandbox_id.len().min(12)])
}

/// Runs a host tool to completion.
///
/// # Errors
/// [`RuntimeError::Network`] with the tool's stderr when it fails.
async fn run_tool(program: &Path, args: &[&str]) -> Result<()> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| RuntimeError::io(format!("running {}", program.display()), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(RuntimeError::Network(format!(
        "{} {}: {}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// Creates network namespace `name` with its loopback up.
///
/// # Errors
/// [`RuntimeError::Network`].
pub(crate) async fn add_netns(ip: &Path, name: &str) -> Result<PathBuf> {
    let path = netns_path(name);
    if !path.exists() {
        run_tool(ip, &["netns", "add", name]).await?;
    }
    run_tool(ip, &["-n", name, "link", "set", "lo", "up"]).await?;
    Ok(path)
}

/// Deletes network namespace `name`; one already gone is fine.
///
/// # Errors
/// [`RuntimeError::Network`].
pub(crate) async fn delete_netns(ip: &Path, name: &str) -> Result<()> {
    if !netns_path(name).exists() {
        return Ok(());
    }
    run_tool(ip, &["netns", "delete", name]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_sh() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("it's $HOME"), r"'it'\''s $HOME'");
    }

    #[test]
    fn executables_are_found_on_path_or_by_name() {
        let sh = find_executable("sh", DEFAULT_PATH, Path::to_owned).unwrap();
        assert!(sh.ends_with("sh"));
        assert!(find_executable("/bin/sh", "", Path::to_owned).is_some());
        assert!(find_executable("no-such-kaji-tool", DEFAULT_PATH, Path::to_owned).is_none());
        assert!(find_executable("sh", "", Path::to_owned).is_none());
    }

    #[test]
    fn netns_names_fit_interface_name_limits() {
        assert_eq!(netns_name("0123456789abcdef0123"), "kaji-0123456789ab");
        assert_eq!(netns_name("ab"), "kaji-ab");
    }
}
