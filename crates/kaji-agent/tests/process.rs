//! The agent running real processes through `ProcessRuntime` (without
//! namespaces, so it behaves the same as root or not), against a real
//! in-process API server. Every test kills what its runtime started when
//! it ends, even on failure.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapVolumeSource, EnvFromSource,
    EnvVar, EnvVarSource, ExecAction, Node, ObjectFieldSelector, Pod, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kaji_agent::{Agent, AgentConfig};
use kaji_runtime_process::{ProcessOptions, ProcessRuntime};
use kaji_testenv::{eventually, TestEnv};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NODE: &str = "proc-node";

struct ProcessNode {
    env: TestEnv,
    agent: Agent,
    runtime: ProcessRuntime,
    dir: tempfile::TempDir,
}

impl ProcessNode {
    async fn start() -> ProcessNode {
        let env = TestEnv::start().await;
        let dir = tempfile::tempdir().unwrap();
        let options = ProcessOptions {
            isolation: false,
            ..ProcessOptions::default()
        };
        let runtime = ProcessRuntime::with_options(dir.path().join("runtime"), None, options)
            .expect("process runtime");
        let mut config = AgentConfig::new(NODE, dir.path().join("agent"));
        config.internal_ip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        config.port = 0;
        config.timings = fast_timings(false);
        let agent = kaji_agent::start(env.client(), config, std::sync::Arc::new(runtime.clone()))
            .await
            .expect("agent starts");
        ProcessNode {
            env,
            agent,
            runtime,
            dir,
        }
    }

    fn client(&self) -> kube::Client {
        self.env.client()
    }

    /// A path in the test's directory, for files processes read or write.
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    async fn log(&self, pod: &str, container: &str, query: &str) -> String {
        let path = format!("/containerLogs/{NS}/{pod}/{container}{query}");
        let (code, body) = https_get(self.agent.port(), self.agent.certificate_pem(), &path).await;
        assert_eq!(code, 200, "{path}: {body}");
        body
    }

    async fn wait_log(&self, pod: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        eventually(&format!("log of {pod}: {what}"), || async {
            let log = self.log(pod, "app", "").await;
            check(&log).then_some(log)
        })
        .await
    }

    /// Deletes every pod and waits for the agent to finish the deletions.
    async fn delete_all(&self) {
        let api = Api::<Pod>::namespaced(self.client(), NS);
        let pods = api.list(&Default::default()).await.unwrap();
        for p in &pods.items {
            let _ = api
                .delete(
                    p.metadata.name.as_deref().unwrap(),
                    &DeleteParams::default(),
                )
                .await;
        }
        for p in &pods.items {
            wait_gone(&self.client(), p.metadata.name.as_deref().unwrap()).await;
        }
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        // Whatever a failed test left running dies with it.
        self.runtime.kill_everything();
    }
}

fn sh(script: &str) -> Vec<k8s_openapi::api::core::v1::Container> {
    vec![container("app", &["sh", "-c", script])]
}

#[tokio::test]
async fn a_process_node_registers_from_the_machine_goes_ready_and_renews_its_lease() {
    let node = ProcessNode::start().await;
    let nodes: Api<Node> = Api::all(node.client());
    let n = eventually("the node Ready", || async {
        let n = nodes.get_opt(NODE).await.ok().flatten()?;
        let ready = n.status.as_ref()?.conditions.as_ref()?.iter().any(|c| {
            c.type_ == "Ready" && c.status == "True" && c.reason.as_deref() == Some("KubeletReady")
        });
        ready.then_some(n)
    })
    .await;
    let status = n.status.unwrap();
    let capacity = status.capacity.unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(capacity["cpu"].0, cpus.to_string());
    assert!(capacity["memory"].0.ends_with("Ki"));
    assert_ne!(capacity["ephemeral-storage"].0, "0");
    assert_eq!(capacity["pods"].0, "110");
    let info = status.node_info.unwrap();
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    assert_eq!(info.machine_id, machine_id.trim());
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    assert_eq!(info.boot_id, boot_id.trim());
    assert!(
        info.container_runtime_version.contains("://"),
        "{}",
        info.container_runtime_version
    );
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(
        ready
            .message
            .unwrap()
            .contains("WARNING: pod network not isolated"),
        "without a pod network the node says pods share the host network"
    );
    let leases: Api<Lease> = Api::namespaced(node.client(), kaji_agent::LEASE_NAMESPACE);
    let first = eventually("the lease", || async {
        leases.get_opt(NODE).await.ok().flatten()
    })
    .await
    .spec
    .unwrap()
    .renew_time
    .unwrap();
    eventually("the lease renewed", || async {
        let l = leases.get(NODE).await.ok()?;
        (l.spec?.renew_time? > first).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_process_pod_runs_and_its_log_is_served() {
    let node = ProcessNode::start().await;
    let client = node.client();
    create(
        &client,
        &pod("hello", NODE, sh("echo hello; echo world; sleep 3600")),
    )
    .await;
    let p = wait_pod(&client, "hello", "Running", |p| {
        phase(p) == "Running" && is_running(p, "app")
    })
    .await;
    let cs = container_status(&p, "app").unwrap();
    assert!(cs.ready);
    assert!(cs.container_id.as_deref().unwrap().contains("://"));
    assert_eq!(
        p.status.as_ref().unwrap().pod_ip.as_deref(),
        Some("127.0.0.1")
    );
    node.wait_log("hello", "hello and world", |l| l == "hello\nworld\n")
        .await;
    assert_eq!(node.log("hello", "app", "?tailLines=1").await, "world\n");
    let stamped = node.log("hello", "app", "?timestamps=true").await;
    assert!(
        stamped
            .lines()
            .all(|l| l.contains('T') && l.ends_with(['o', 'd'])),
        "{stamped}"
    );
    assert_eq!(node.log("hello", "app", "?limitBytes=3").await, "hel");
    // As `kubectl logs` reads it: through the API server, which finds the
    // agent from the Node's address and port.
    let relayed = Api::<Pod>::namespaced(client.clone(), NS)
        .logs("hello", &kube::api::LogParams::default())
        .await
        .expect("pods/log relayed by the API server");
    assert_eq!(relayed, "hello\nworld\n");
    let (code, _) = https_get(
        node.agent.port(),
        node.agent.certificate_pem(),
        &format!("/containerLogs/{NS}/hello/app?previous=true"),
    )
    .await;
    assert_eq!(code, 400, "no previous instance yet");
    node.delete_all().await;
}

#[tokio::test]
async fn a_process_exiting_one_under_restart_policy_never_fails_the_pod() {
    let node = ProcessNode::start().await;
    let client = node.client();
    let mut p = pod("failing", NODE, sh("echo bye; exit 1"));
    p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    create(&client, &p).await;
    let p = wait_pod(&client, "failing", "Failed", |p| phase(p) == "Failed").await;
    let t = container_status(&p, "app")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(t.exit_code, 1);
    assert_eq!(t.reason.as_deref(), Some("Error"));
    assert!(t.finished_at.is_some());
    assert_eq!(node.log("failing", "app", "").await, "bye\n");
    node.delete_all().await;
}

#[tokio::test]
async fn on_failure_restarts_a_failing_process_into_crash_loop_back_off() {
    let node = ProcessNode::start().await;
    let client = node.client();
    let mut p = pod("looping", NODE, sh("echo try; exit 1"));
    p.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    create(&client, &p).await;
    let p = wait_pod(
        &client,
        "looping",
        "CrashLoopBackOff after a restart",
        |p| {
            waiting_reason(p, "app").as_deref() == Some("CrashLoopBackOff")
                && container_status(p, "app").unwrap().restart_count >= 1
        },
    )
    .await;
    let uid = p.metadata.uid.clone().unwrap();
    let cs = container_status(&p, "app").unwrap();
    assert_eq!(
        cs.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .message
            .as_deref(),
        Some(
            format!("back-off 10s restarting failed container=app pod=looping_default({uid})")
                .as_str()
        )
    );
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 1);
    assert_eq!(phase(&p), "Running");
    // The previous instance's log is still served.
    assert_eq!(node.log("looping", "app", "?previous=true").await, "try\n");
    node.delete_all().await;
}

#[tokio::test]
async fn env_from_config_maps_and_the_downward_api_reaches_the_process() {
    let node = ProcessNode::start().await;
    let client = node.client();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("settings".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            ("greeting".into(), "hello".into()),
            ("color".into(), "blue".into()),
        ])),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let mut c = container("app", &["sh", "-c"]);
    c.args = Some(vec!["env; echo args=$(COMBINED); sleep 3600".into()]);
    c.env_from = Some(vec![EnvFromSource {
        prefix: Some("CFG_".into()),
        config_map_ref: Some(ConfigMapEnvSource {
            name: "settings".into(),
            optional: None,
        }),
        secret_ref: None,
    }]);
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            api_version: None,
        }),
        ..EnvVarSource::default()
    };
    c.env = Some(vec![
        EnvVar {
            name: "GREETING".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "settings".into(),
                    key: "greeting".into(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
            value: None,
        },
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(field("metadata.name")),
            value: None,
        },
        EnvVar {
            name: "NODE".into(),
            value_from: Some(field("spec.nodeName")),
            value: None,
        },
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(field("status.podIP")),
            value: None,
        },
        EnvVar {
            name: "COMBINED".into(),
            value: Some("$(GREETING)-$(POD_NAME)".into()),
            value_from: None,
        },
    ]);
    create(&client, &pod("envy", NODE, vec![c])).await;
    let log = node
        .wait_log("envy", "the environment", |l| l.contains("args="))
        .await;
    for line in [
        "GREETING=hello",
        "CFG_color=blue",
        "CFG_greeting=hello",
        "POD_NAME=envy",
        "NODE=proc-node",
        "POD_IP=127.0.0.1",
        "COMBINED=hello-envy",
        "args=hello-envy",
    ] {
        assert!(log.lines().any(|l| l == line), "{line} in:\n{log}");
    }
    node.delete_all().await;
}

#[tokio::test]
async fn config_map_volume_files_are_readable_by_the_process_and_follow_updates() {
    let node = ProcessNode::start().await;
    let client = node.client();
    let cms = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("files".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("greeting".into(), "first".into())])),
        ..ConfigMap::default()
    };
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let mount = node.path("mnt/cfg");
    let script = format!("while true; do cat {mount}/greeting; echo; sleep 0.5; done");
    let mut c = container("app", &["sh", "-c", &script]);
    c.volume_mounts = Some(vec![VolumeMount {
        name: "cfg".into(),
        mount_path: mount.clone(),
        read_only: Some(true),
        ..VolumeMount::default()
    }]);
    let mut p = pod("mounted", NODE, vec![c]);
    p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "cfg".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "files".into(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }]);
    create(&client, &p).await;
    node.wait_log("mounted", "the file's contents", |l| {
        l.lines().any(|x| x == "first")
    })
    .await;
    let patch = json!({"data": {"greeting": "second"}});
    cms.patch("files", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    node.wait_log("mounted", "the updated contents", |l| {
        l.lines().any(|x| x == "second")
    })
    .await;
    node.delete_all().await;
}

#[tokio::test]
async fn a_readiness_exec_probe_decides_when_the_pod_is_ready() {
    let node = ProcessNode::start().await;
    let client = node.client();
    let flag = node.path("ready");
    let mut c = container("app", &["sh", "-c", "sleep 3600"]);
    c.readiness_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(vec!["test".into(), "-f".into(), flag.clone()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Probe::default()
    });
    create(&client, &pod("probed", NODE, vec![c])).await;
    let p = wait_pod(&client, "probed", "running but not ready", |p| {
        is_running(p, "app") && condition(p, "Ready").as_deref() == Some("False")
    })
    .await;
    assert!(!container_status(&p, "app").unwrap().ready);
    std::fs::write(&flag, "").unwrap();
    wait_pod(&client, "probed", "Ready", |p| {
        condition(p, "Ready").as_deref() == Some("True")
    })
    .await;
    std::fs::remove_file(&flag).unwrap();
    wait_pod(&client, "probed", "not Ready again", |p| {
        condition(p, "Ready").as_deref() == Some("False")
    })
    .await;
    assert!(!events(&client, "probed", "Unhealthy").await.is_empty());
    node.delete_all().await;
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_process() {
    let node = ProcessNode::start().await;
    let client = node.client();
    let mut c = container("app", &["sh", "-c", "sleep 3600"]);
    c.liveness_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(vec!["false".into()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Probe::default()
    });
    let mut p = pod("unlively", NODE, vec![c]);
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(1);
    create(&client, &p).await;
    wait_pod(&client, "unlively", "restarted", |p| {
        container_status(p, "app").is_some_and(|c| c.restart_count >= 1)
    })
    .await;
    let killing = events(&client, "unlively", "Killing").await;
    assert!(
        killing.iter().any(|e| e.message.as_deref()
            == Some("Container app failed liveness probe, will be restarted")),
        "{killing:?}"
    );
    node.delete_all().await;
}

fn alive(pid: u32) -> bool {
    // A zombie is dead; only a live process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

#[tokio::test]
async fn deleting_a_process_pod_stops_its_process_within_the_grace_period() {
    let node = ProcessNode::start().await;
    let client = node.client();
    // `$$$$` is `$$` once Kubernetes' `$(VAR)` expansion has unescaped it.
    let created = create(
        &client,
        &pod("stopping", NODE, sh("echo pid=$$$$; exec sleep 3600")),
    )
    .await;
    let uid = created.metadata.uid.unwrap();
    wait_pod(&client, "stopping", "Running", |p| is_running(p, "app")).await;
    let log = node
        .wait_log("stopping", "its pid", |l| l.starts_with("pid="))
        .await;
    let pid: u32 = log.trim().trim_start_matches("pid=").parse().unwrap();
    assert!(alive(pid));
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    pods.delete("stopping", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = pods.get_opt("stopping").await.unwrap();
    if let Some(p) = terminating {
        assert!(
            p.metadata.deletion_timestamp.is_some(),
            "a bound pod terminates gracefully"
        );
    }
    wait_gone(&client, "stopping").await;
    assert!(!alive(pid), "process {pid} still runs");
    assert!(
        !Path::new(&node.path("agent/pods")).join(&uid).exists(),
        "the pod's directory is removed"
    );
    assert!(!events(&client, "stopping", "Killing").await.is_empty());
}

#[tokio::test]
async fn exec_over_websocket_streams_output_and_the_exit_code() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let node = ProcessNode::start().await;
    let client = node.client();
    create(&client, &pod("shell", NODE, sh("sleep 3600"))).await;
    wait_pod(&client, "shell", "Running", |p| is_running(p, "app")).await;
    let port = node.agent.port();
    let query = "command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+exit+3&stdout=true&stderr=true";
    let mut request = format!("wss://127.0.0.1:{port}/exec/{NS}/shell/app?{query}")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let tls = tls_connect(port, node.agent.certificate_pem()).await;
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("WebSocket upgrade");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
    while let Some(Ok(message)) = ws.next().await {
        let Message::Binary(data) = message else {
            continue;
        };
        match data.first() {
            Some(1) => stdout.extend_from_slice(&data[1..]),
            Some(2) => stderr.extend_from_slice(&data[1..]),
            Some(3) => {
                status = Some(serde_json::from_slice::<serde_json::Value>(&data[1..]).unwrap())
            }
            _ => {}
        }
    }
    assert_eq!(String::from_utf8_lossy(&stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&stderr), "err\n");
    let status = status.expect("a final status");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    node.delete_all().await;
}

#[tokio::test]
async fn secret_downward_projected_and_empty_dir_volumes_reach_the_process() {
    use k8s_openapi::api::core::v1::{
        DownwardAPIProjection, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
        EmptyDirVolumeSource, KeyToPath, ProjectedVolumeSource, Secret, SecretVolumeSource,
        VolumeProjection,
    };
    use k8s_openapi::ByteString;

    let node = ProcessNode::start().await;
    let client = node.client();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("creds".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "password".to_string(),
            ByteString(b"s3cret".to_vec()),
        )])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("files".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("greeting".into(), "hello".into())])),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let m = node.path("mounts");
    let field = |path: &str, field: &str| DownwardAPIVolumeFile {
        path: path.into(),
        field_ref: Some(ObjectFieldSelector {
            field_path: field.into(),
            api_version: None,
        }),
        ..DownwardAPIVolumeFile::default()
    };
    let script = format!(
        "cat {m}/secret/pw; echo; stat -L -c %a {m}/secret/pw; cat {m}/down/labels; echo; \
         cat {m}/down/name; echo; cat {m}/proj/greeting; echo; cat {m}/proj/ns; echo; \
         echo scratch > {m}/scratch/f && cat {m}/scratch/f; echo done; sleep 3600"
    );
    let mut c = container("app", &["sh", "-c", &script]);
    let mount = |name: &str| VolumeMount {
        name: name.into(),
        mount_path: format!("{m}/{name}"),
        ..VolumeMount::default()
    };
    c.volume_mounts = Some(vec![
        mount("secret"),
        mount("down"),
        mount("proj"),
        mount("scratch"),
    ]);
    let mut p = pod("volumes", NODE, vec![c]);
    p.metadata.labels = Some(BTreeMap::from([("app".into(), "demo".into())]));
    p.spec.as_mut().unwrap().volumes = Some(vec![
        Volume {
            name: "secret".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("creds".into()),
                items: Some(vec![KeyToPath {
                    key: "password".into(),
                    path: "pw".into(),
                    mode: Some(0o400),
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "down".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![
                    field("labels", "metadata.labels"),
                    field("name", "metadata.name"),
                ]),
                ..DownwardAPIVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "proj".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![
                    VolumeProjection {
                        config_map: Some(k8s_openapi::api::core::v1::ConfigMapProjection {
                            name: "files".into(),
                            ..Default::default()
                        }),
                        ..VolumeProjection::default()
                    },
                    VolumeProjection {
                        downward_api: Some(DownwardAPIProjection {
                            items: Some(vec![field("ns", "metadata.namespace")]),
                        }),
                        ..VolumeProjection::default()
                    },
                ]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]);
    create(&client, &p).await;
    let log = node
        .wait_log("volumes", "every file read", |l| l.contains("done"))
        .await;
    assert_eq!(
        log,
        "s3cret\n400\napp=\"demo\"\nvolumes\nhello\ndefault\nscratch\ndone\n"
    );
    node.delete_all().await;
}
