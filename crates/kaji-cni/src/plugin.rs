//! Executing one CNI plugin binary as the CNI spec prescribes: the command
//! and container in `CNI_*` environment variables, the network
//! configuration on stdin, a result or an error as JSON on stdout.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// A CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    /// Attach the container to the network.
    Add,
    /// Detach it; must succeed when already detached.
    Del,
    /// Verify an earlier ADD still holds.
    Check,
}

impl fmt::Display for CniCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
        })
    }
}

/// Why a plugin invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The configuration names no plugin, or one that is not in the bin dir.
    #[error("CNI plugin {plugin:?} not found in {}", dir.display())]
    NotFound {
        /// The plugin type asked for.
        plugin: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// The binary could not be executed.
    #[error("CNI plugin {plugin} {command}: cannot run: {source}")]
    Spawn {
        /// The plugin type.
        plugin: String,
        /// The operation.
        command: CniCommand,
        /// The underlying cause.
        #[source]
        source: std::io::Error,
    },
    /// The plugin reported an error in the spec's format. Codes 1–99 are
    /// the spec's (e.g. 3 unknown container, 7 invalid config, 11 try again
    /// later); 999 is what the reference plugins use for everything else.
    #[error(
        "CNI plugin {plugin} {command} failed (code {code}): {msg}{}",
        details_suffix(details)
    )]
    Failed {
        /// The plugin type.
        plugin: String,
        /// The operation.
        command: CniCommand,
        /// The error code.
        code: u32,
        /// The short message.
        msg: String,
        /// The longer explanation, often empty.
        details: String,
    },
    /// The plugin failed without a parsable error (crashed, killed).
    #[error("CNI plugin {plugin} {command} exited with {status}: {output}")]
    Exited {
        /// The plugin type.
        plugin: String,
        /// The operation.
        command: CniCommand,
        /// How it ended.
        status: ExitStatus,
        /// Its stderr, or stdout when stderr was empty (trimmed).
        output: String,
    },
    /// The plugin did not finish in time and was killed.
    #[error("CNI plugin {plugin} {command} timed out after {timeout:?}")]
    Timeout {
        /// The plugin type.
        plugin: String,
        /// The operation.
        command: CniCommand,
        /// How long it was given.
        timeout: Duration,
    },
    /// ADD succeeded but printed something that is not a CNI result.
    #[error("CNI plugin {plugin} {command} returned an invalid result: {source}")]
    InvalidResult {
        /// The plugin type.
        plugin: String,
        /// The operation.
        command: CniCommand,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

/// The per-call parameters the spec passes in the environment.
#[derive(Debug, Clone)]
pub(crate) struct Invocation<'a> {
    pub command: CniCommand,
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// `CNI_ARGS`: `KEY=VALUE;...`.
    pub args: &'a str,
    /// Where plugins (and the IPAM plugins they delegate to) are found.
    pub bin_dir: &'a Path,
    pub timeout: Duration,
}

/// Runs the plugin named by `conf["type"]` with `conf` on stdin.
///
/// Returns the parsed result for ADD and `Value::Null` for DEL and CHECK,
/// whose output the spec leaves empty.
///
/// # Errors
/// See [`PluginError`].
pub(crate) async fn invoke(conf: &Value, inv: &Invocation<'_>) -> Result<Value, PluginError> {
    let plugin = conf
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let not_found = || PluginError::NotFound {
        plugin: plugin.clone(),
        dir: inv.bin_dir.to_path_buf(),
    };
    // A type is a file name in the bin dir, never a path elsewhere.
    if plugin.is_empty() || plugin.contains('/') || plugin.starts_with('.') {
        return Err(not_found());
    }
    let binary = inv.bin_dir.join(&plugin);
    if !binary.is_file() {
        return Err(not_found());
    }
    let command = inv.command;
    let stdin_bytes = serde_json::to_vec(conf).unwrap_or_default();

    let mut child = Command::new(&binary)
        .env("CNI_COMMAND", command.to_string())
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", inv.bin_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A timed-out plugin is killed when its future is dropped.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| PluginError::Spawn {
            plugin: plugin.clone(),
            command,
            source,
        })?;
    let mut stdin = child.stdin.take();
    let run = async {
        let feed = async {
            if let Some(pipe) = stdin.as_mut() {
                // A plugin may exit without reading everything; its exit
                // status, not the broken pipe, is what matters.
                let _ = pipe.write_all(&stdin_bytes).await;
            }
            drop(stdin.take());
        };
        let (_, output) = tokio::join!(feed, child.wait_with_output());
        output
    };
    let output = match tokio::time::timeout(inv.timeout, run).await {
        Err(_) => {
            return Err(PluginError::Timeout {
                plugin,
                command,
                timeout: inv.timeout,
            })
        }
        Ok(Err(source)) => {
            return Err(PluginError::Spawn {
                plugin,
                command,
                source,
            })
        }
        Ok(Ok(output)) => output,
    };
    tracing::debug!(%plugin, %command, container = inv.container_id, status = %output.status, "CNI plugin ran");

    if !output.status.success() {
        return Err(failure(
            plugin,
            command,
            output.status,
            &output.stdout,
            &output.stderr,
        ));
    }
    if command != CniCommand::Add {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&output.stdout).map_err(|source| PluginError::InvalidResult {
        plugin,
        command,
        source,
    })
}

/// The spec's error object.
#[derive(Deserialize)]
struct ErrorJson {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

fn failure(
    plugin: String,
    command: CniCommand,
    status: ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
) -> PluginError {
    if let Ok(e) = serde_json::from_slice::<ErrorJson>(stdout) {
        return PluginError::Failed {
            plugin,
            command,
            code: e.code,
            msg: e.msg,
            details: e.details,
        };
    }
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
    let mut output = text(stderr);
    if output.is_empty() {
        output = text(stdout);
    }
    // Keep error messages readable if a plugin dumps a lot.
    if output.len() > 2000 {
        let cut = (0..=2000)
            .rev()
            .find(|i| output.is_char_boundary(*i))
            .unwrap_or(0);
        output.truncate(cut);
        output.push('…');
    }
    PluginError::Exited {
        plugin,
        command,
        status,
        output,
    }
}

/// The parts of a CNI 1.0 result this crate reads.
#[derive(Debug, Deserialize)]
struct ResultJson {
    #[serde(default)]
    interfaces: Vec<InterfaceJson>,
    #[serde(default)]
    ips: Vec<IpJson>,
}

#[derive(Debug, Deserialize)]
struct InterfaceJson {
    name: String,
    #[serde(default)]
    sandbox: String,
}

#[derive(Debug, Deserialize)]
struct IpJson {
    address: String,
    interface: Option<usize>,
}

/// The pod's IPv4 address in an ADD result: the first one on the container
/// interface `ifname`, else the first one at all.
pub(crate) fn pod_ipv4(result: &Value, ifname: &str) -> Option<Ipv4Addr> {
    let parsed = ResultJson::deserialize(result).ok()?;
    let v4 = |ip: &IpJson| -> Option<Ipv4Addr> {
        let addr = ip.address.split('/').next()?;
        addr.parse().ok()
    };
    let on_pod_interface = |ip: &&IpJson| {
        ip.interface
            .and_then(|i| parsed.interfaces.get(i))
            .is_some_and(|iface| iface.name == ifname && !iface.sandbox.is_empty())
    };
    parsed
        .ips
        .iter()
        .filter(on_pod_interface)
        .find_map(v4)
        .or_else(|| parsed.ips.iter().find_map(v4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn fake_plugin(dir: &Path, name: &str, script: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn invocation<'a>(dir: &'a Path, command: CniCommand) -> Invocation<'a> {
        Invocation {
            command,
            container_id: "c1",
            netns: Path::new("/run/netns/nowhere"),
            ifname: "eth0",
            args: "IgnoreUnknown=1",
            bin_dir: dir,
            timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn add_passes_the_spec_environment_and_config_and_parses_the_result() {
        let dir = tempfile::tempdir().unwrap();
        // Echo back what the plugin saw, as a result-shaped JSON object.
        fake_plugin(
            dir.path(),
            "echo",
            r#"conf=$(cat)
printf '{"cniVersion":"1.0.0","env":"%s %s %s %s %s","conf":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$conf""#,
        );
        let conf = json!({ "type": "echo", "name": "n" });
        let out = invoke(&conf, &invocation(dir.path(), CniCommand::Add))
            .await
            .unwrap();
        assert_eq!(out["env"], "ADD c1 /run/netns/nowhere eth0 IgnoreUnknown=1");
        assert_eq!(out["conf"], conf);
    }

    #[tokio::test]
    async fn a_spec_error_on_stdout_becomes_a_typed_failure() {
        let dir = tempfile::tempdir().unwrap();
        fake_plugin(
            dir.path(),
            "bad",
            r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge"}'; exit 1"#,
        );
        let err = invoke(
            &json!({"type": "bad"}),
            &invocation(dir.path(), CniCommand::Del),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, PluginError::Failed { code: 7, msg, details, command: CniCommand::Del, .. }
                if msg == "invalid config" && details == "no bridge"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "CNI plugin bad DEL failed (code 7): invalid config (no bridge)"
        );
    }

    #[tokio::test]
    async fn a_crash_without_an_error_object_reports_stderr() {
        let dir = tempfile::tempdir().unwrap();
        fake_plugin(dir.path(), "crash", "echo boom >&2; exit 2");
        let err = invoke(
            &json!({"type": "crash"}),
            &invocation(dir.path(), CniCommand::Check),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, PluginError::Exited { output, .. } if output == "boom"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_or_path_like_plugin_type_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        for conf in [
            json!({"type": "nope"}),
            json!({"type": "../bin/sh"}),
            json!({}),
        ] {
            let err = invoke(&conf, &invocation(dir.path(), CniCommand::Add))
                .await
                .unwrap_err();
            assert!(matches!(err, PluginError::NotFound { .. }), "{err:?}");
        }
    }

    #[tokio::test]
    async fn a_plugin_that_hangs_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        fake_plugin(dir.path(), "hang", "exec sleep 30");
        let mut inv = invocation(dir.path(), CniCommand::Add);
        inv.timeout = Duration::from_millis(200);
        let err = invoke(&json!({"type": "hang"}), &inv).await.unwrap_err();
        assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
    }

    #[test]
    fn the_pod_address_is_the_ipv4_one_on_the_container_interface() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                { "name": "kaji0", "mac": "aa" },
                { "name": "veth1", "mac": "bb" },
                { "name": "eth0", "mac": "cc", "sandbox": "/run/netns/p" }
            ],
            "ips": [
                { "address": "fd00::2/64", "interface": 2 },
                { "address": "10.0.9.9/24", "interface": 0 },
                { "address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 2 }
            ]
        });
        assert_eq!(pod_ipv4(&result, "eth0"), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(pod_ipv4(&json!({"ips": []}), "eth0"), None);
    }
}
