//! Running a command in a running container: `exec_sync` for probes,
//! `exec` with streamed stdio for `kubectl exec`.
//!
//! As root the command enters the container main process' network and
//! mount namespaces with `nsenter --target`, then joins its cgroup; either
//! way it gets the container's env and working directory. Without a pty
//! (that needs `unsafe` to set a controlling terminal), `tty` only merges
//! stderr into stdout.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::FutureExt;
use kaji_runtime::{ExecOutput, ExecSession, Result, RuntimeError};
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::cgroup::ContainerCgroup;
use crate::host::{exit_code, quote, signal_group, Host};

/// Where and how a container's commands run.
#[derive(Debug, Clone)]
pub(crate) struct ExecTarget {
    pub container_id: String,
    /// The main process, when exec should enter its namespaces.
    pub enter_pid: Option<i32>,
    pub cgroup: Option<ContainerCgroup>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
}

fn start_error(target: &ExecTarget, source: std::io::Error) -> RuntimeError {
    RuntimeError::Start {
        what: format!("exec in container {}", target.container_id),
        source,
    }
}

fn command(host: &Host, target: &ExecTarget, cmd: &[String], tty: bool) -> Result<Command> {
    let Some(first) = cmd.first() else {
        let empty = std::io::Error::new(ErrorKind::InvalidInput, "empty command");
        return Err(start_error(target, empty));
    };
    let nsenter = host.nsenter.as_ref().filter(|_| host.root);
    let wrapped = tty || target.enter_pid.is_some() || target.cgroup.is_some();
    let mut command = if wrapped {
        let mut words: Vec<OsString> = Vec::new();
        if let (Some(pid), Some(nsenter)) = (target.enter_pid, nsenter) {
            words.push(nsenter.into());
            words.extend(
                [format!("--target={pid}"), "--net".into(), "--mount".into()].map(OsString::from),
            );
        }
        let mut script = String::new();
        for procs in target
            .cgroup
            .as_ref()
            .map(ContainerCgroup::procs_files)
            .unwrap_or_default()
        {
            script += &format!("echo $$ > {} || exit 125\n", quote(procs));
        }
        script += &format!(
            "cd {} || exit 125\nunset PWD OLDPWD\n",
            quote(&target.working_dir)
        );
        script += if tty {
            "exec \"$@\" 2>&1\n"
        } else {
            "exec \"$@\"\n"
        };
        words.extend([
            host.sh.clone().into(),
            "-c".into(),
            script.into(),
            "kaji-exec".into(),
        ]);
        words.extend(cmd.iter().map(OsString::from));
        let mut c = Command::new(&words[0]);
        c.args(&words[1..]);
        c
    } else {
        let mut c = Command::new(first);
        c.args(&cmd[1..]).current_dir(&target.working_dir);
        c
    };
    command
        .env_clear()
        .envs(target.env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    Ok(command)
}

/// Runs `cmd` to completion, killing it (and what it forked) at `timeout`.
///
/// # Errors
/// [`RuntimeError::Start`] when it cannot start; [`RuntimeError::Io`] with
/// kind `TimedOut` when the timeout passed.
pub(crate) async fn exec_sync(
    host: &Host,
    target: &ExecTarget,
    cmd: &[String],
    timeout: Duration,
) -> Result<ExecOutput> {
    let mut command = command(host, target, cmd, false)?;
    command.stdin(Stdio::null());
    let mut child = command.spawn().map_err(|e| start_error(target, e))?;
    let pgid = child.id().map_or(0, |p| p as i32);
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let read_out = async {
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut err).await;
            }
        };
        let (status, (), ()) = tokio::join!(child.wait(), read_out, read_err);
        (status, out, err)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((status, stdout, stderr)) => {
            let status = status.map_err(|e| RuntimeError::io("waiting for exec", e))?;
            Ok(ExecOutput {
                stdout,
                stderr,
                exit_code: exit_code(status),
            })
        }
        Err(_) => {
            signal_group(pgid, Signal::SIGKILL);
            Err(RuntimeError::io(
                format!(
                    "exec in container {} timed out after {timeout:?}",
                    target.container_id
                ),
                std::io::Error::from(ErrorKind::TimedOut),
            ))
        }
    }
}

/// Starts `cmd` with streamed stdio. Dropping the session's exit-code
/// future kills the command.
///
/// # Errors
/// [`RuntimeError::Start`] when it cannot start.
pub(crate) fn exec(
    host: &Host,
    target: &ExecTarget,
    cmd: &[String],
    stdin: bool,
    tty: bool,
) -> Result<ExecSession> {
    let mut command = command(host, target, cmd, tty)?;
    command.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().map_err(|e| start_error(target, e))?;
    let missing = || RuntimeError::io("exec", std::io::Error::other("stdio pipe missing"));
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    let stdin = child
        .stdin
        .take()
        .map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
    let exit = async move {
        let status = child
            .wait()
            .await
            .map_err(|e| RuntimeError::io("waiting for exec", e))?;
        Ok(exit_code(status))
    };
    Ok(ExecSession {
        stdin,
        stdout: Box::pin(stdout),
        stderr: Box::pin(stderr),
        exit_code: exit.boxed(),
    })
}
