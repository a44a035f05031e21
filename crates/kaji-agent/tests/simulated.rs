//! The agent's node registration, heartbeats and pod lifecycle against a
//! real in-process API server, on simulated nodes (no processes).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapKeySelector, ConfigMapVolumeSource, EnvVar, EnvVarSource, Node, Pod,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kaji_agent::{Agent, SimulatedConfig};
use kaji_runtime::{PodRuntime, PodSandboxConfig, PodSandboxMetadata};
use kaji_testenv::{eventually, TestEnv};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

struct Sim {
    env: TestEnv,
    agent: Agent,
    _dir: tempfile::TempDir,
}

impl Sim {
    async fn start(count: usize, quick_backoff: bool) -> Sim {
        let env = TestEnv::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = SimulatedConfig::new(count, dir.path());
        config.port = 0;
        config.timings = fast_timings(quick_backoff);
        config.labels = BTreeMap::from([("pool".to_string(), "sim".to_string())]);
        let agent = kaji_agent::start_simulated(env.client(), config)
            .await
            .expect("simulated nodes start");
        Sim {
            env,
            agent,
            _dir: dir,
        }
    }

    fn client(&self) -> kube::Client {
        self.env.client()
    }
}

#[tokio::test]
async fn simulated_nodes_register_with_labels_capacity_addresses_and_a_ready_condition() {
    let sim = Sim::start(2, false).await;
    let nodes: Api<Node> = Api::all(sim.client());
    let node = eventually("node-1 ready", || async {
        let n = nodes.get_opt("node-1").await.ok().flatten()?;
        let ready = n
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")?
            .clone();
        (ready.status == "True").then_some((n, ready))
    })
    .await;
    let (node, ready) = node;
    assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
    assert!(
        ready
            .message
            .as_deref()
            .unwrap()
            .contains("pod network not isolated"),
        "without a pod CIDR the node says pods are not isolated: {:?}",
        ready.message
    );
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "node-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels.contains_key("kubernetes.io/arch"));
    assert_eq!(labels["pool"], "sim");
    let status = node.status.clone().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "8");
    assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
    assert!(status.allocatable.as_ref().unwrap().contains_key("memory"));
    let addresses = status.addresses.unwrap();
    assert!(addresses
        .iter()
        .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"));
    assert!(addresses.iter().any(|a| a.type_ == "Hostname"));
    let info = status.node_info.unwrap();
    assert_eq!(info.kubelet_version, kaji_agent::KUBELET_VERSION);
    assert!(info
        .container_runtime_version
        .starts_with("kaji-simulated://"));
    assert_eq!(info.operating_system, "linux");
    let port = status
        .daemon_endpoints
        .unwrap()
        .kubelet_endpoint
        .unwrap()
        .port;
    assert_eq!(port, i32::from(sim.agent.port()));
    let types: Vec<String> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    for t in ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"] {
        assert!(types.contains(&t.to_string()), "{t} in {types:?}");
    }
    assert_eq!(
        node.metadata.annotations.unwrap()[kaji_agent::POD_NETWORK_ANNOTATION],
        "host"
    );
}

/// Gives node-0 a pod CIDR, as node IPAM would, and waits until its pods
/// are isolated.
async fn assign_pod_cidr(sim: &Sim, cidr: &str) {
    let nodes: Api<Node> = Api::all(sim.client());
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    nodes
        .patch("node-0", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the node says pods are isolated", || async {
        let n = nodes.get("node-0").await.ok()?;
        let a = n.metadata.annotations?;
        (a.get(kaji_agent::POD_NETWORK_ANNOTATION)? == "isolated").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_pod_cidr_assigned_to_the_node_reaches_the_runtime_and_gives_pods_addresses() {
    let sim = Sim::start(1, false).await;
    assign_pod_cidr(&sim, "10.244.7.0/24").await;
    let client = sim.client();
    create(
        &client,
        &pod("addressed", "node-0", vec![container("app", &[])]),
    )
    .await;
    let p = wait_pod(&client, "addressed", "has a pod IP", |p| {
        p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
    })
    .await;
    let ip = p.status.unwrap().pod_ip.unwrap();
    assert!(ip.starts_with("10.244.7."), "{ip}");
}

#[tokio::test]
async fn a_node_deleted_from_the_api_registers_again() {
    let sim = Sim::start(1, false).await;
    let nodes: Api<Node> = Api::all(sim.client());
    let first = eventually("node-0", || async {
        nodes.get_opt("node-0").await.ok().flatten()
    })
    .await;
    nodes
        .delete("node-0", &DeleteParams::default())
        .await
        .unwrap();
    eventually("node-0 registered again", || async {
        let n = nodes.get_opt("node-0").await.ok().flatten()?;
        (n.metadata.uid != first.metadata.uid && n.status.is_some()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn node_leases_are_held_by_their_node_owned_by_it_and_renewed() {
    let sim = Sim::start(3, false).await;
    let leases: Api<Lease> = Api::namespaced(sim.client(), kaji_agent::LEASE_NAMESPACE);
    let nodes: Api<Node> = Api::all(sim.client());
    let first = eventually("node-2's lease", || async {
        leases.get_opt("node-2").await.ok().flatten()
    })
    .await;
    let spec = first.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("node-2"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let node = nodes.get("node-2").await.unwrap();
    let owner = &first.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(owner.kind, "Node");
    assert_eq!(owner.name, "node-2");
    assert_eq!(Some(&owner.uid), node.metadata.uid.as_ref());
    let renewed = spec.renew_time.unwrap();
    eventually("node-2's lease renewed", || async {
        let l = leases.get("node-2").await.ok()?;
        (l.spec?.renew_time? > renewed).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_bound_pod_runs_and_reports_status_conditions_and_events() {
    let sim = Sim::start(2, false).await;
    let client = sim.client();
    create(&client, &pod("web", "node-1", vec![container("app", &[])])).await;
    let p = wait_pod(&client, "web", "Running and Ready", |p| {
        phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True")
    })
    .await;
    let status = p.status.clone().unwrap();
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ] {
        assert_eq!(condition(&p, t).as_deref(), Some("True"), "{t}");
    }
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(
        status.pod_ip.is_some(),
        "a pod without isolation gets the node's IP"
    );
    assert!(status.start_time.is_some());
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let cs = container_status(&p, "app").unwrap();
    assert!(cs.ready);
    assert_eq!(cs.restart_count, 0);
    assert_eq!(cs.started, Some(true));
    assert!(cs
        .container_id
        .as_deref()
        .unwrap()
        .starts_with("kaji-simulated://"));
    assert_eq!(cs.image, "busybox:1.36");
    eventually("Created and Started events", || async {
        let created = events(&client, "web", "Created").await;
        let started = events(&client, "web", "Started").await;
        let e = created.first()?;
        assert_eq!(e.message.as_deref(), Some("Created container: app"));
        assert_eq!(e.source.as_ref()?.component.as_deref(), Some("kubelet"));
        assert_eq!(e.source.as_ref()?.host.as_deref(), Some("node-1"));
        assert_eq!(
            e.involved_object.field_path.as_deref(),
            Some("spec.containers{app}")
        );
        (!started.is_empty()).then_some(())
    })
    .await;
    // The agent lists the pods it runs.
    let (code, body) = https_get(sim.agent.port(), sim.agent.certificate_pem(), "/pods").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"web\""), "{body}");
    let (code, body) = https_get(sim.agent.port(), sim.agent.certificate_pem(), "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn pods_bound_to_other_nodes_are_left_alone() {
    let sim = Sim::start(1, false).await;
    let client = sim.client();
    create(
        &client,
        &pod("elsewhere", "other-node", vec![container("app", &[])]),
    )
    .await;
    create(&client, &pod("here", "node-0", vec![container("app", &[])])).await;
    wait_pod(&client, "here", "Running", |p| phase(p) == "Running").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = Api::<Pod>::namespaced(client.clone(), NS)
        .get("elsewhere")
        .await
        .unwrap();
    assert_eq!(phase(&other), "", "{:?}", other.status);
    assert_eq!(sim.agent.pod_count(), 1);
}

#[tokio::test]
async fn exited_containers_restart_with_crash_loop_back_off() {
    let sim = Sim::start(1, true).await;
    let client = sim.client();
    let runtime = sim.agent.simulated_runtime("node-0").unwrap();
    create(
        &client,
        &pod("crashy", "node-0", vec![container("app", &[])]),
    )
    .await;
    let p = wait_pod(&client, "crashy", "running", |p| is_running(p, "app")).await;
    runtime
        .simulate_exit(&runtime_id(&p, "app").unwrap(), 1, "")
        .unwrap();
    // The first failure restarts at once.
    let p = wait_pod(&client, "crashy", "restarted once", |p| {
        is_running(p, "app") && container_status(p, "app").unwrap().restart_count == 1
    })
    .await;
    let last = container_status(&p, "app")
        .unwrap()
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(last.exit_code, 1);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    runtime
        .simulate_exit(&runtime_id(&p, "app").unwrap(), 2, "")
        .unwrap();
    // The second waits.
    let p = wait_pod(&client, "crashy", "in CrashLoopBackOff", |p| {
        waiting_reason(p, "app").as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    let waiting = container_status(&p, "app")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    assert_eq!(
        waiting.message.as_deref(),
        Some(
            format!("back-off 1s restarting failed container=app pod=crashy_default({uid})")
                .as_str()
        )
    );
    assert_eq!(phase(&p), "Running");
    wait_pod(&client, "crashy", "restarted after back-off", |p| {
        is_running(p, "app") && container_status(p, "app").unwrap().restart_count == 2
    })
    .await;
    assert!(!events(&client, "crashy", "BackOff").await.is_empty());
}

#[tokio::test]
async fn restart_policy_never_fails_the_pod_and_on_failure_succeeds_on_exit_zero() {
    let sim = Sim::start(1, true).await;
    let client = sim.client();
    let runtime = sim.agent.simulated_runtime("node-0").unwrap();
    let mut never = pod("never", "node-0", vec![container("app", &[])]);
    never.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    let mut on_failure = pod("onfailure", "node-0", vec![container("app", &[])]);
    on_failure.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    create(&client, &never).await;
    create(&client, &on_failure).await;
    for (name, code) in [("never", 3), ("onfailure", 0)] {
        let p = wait_pod(&client, name, "running", |p| is_running(p, "app")).await;
        runtime
            .simulate_exit(&runtime_id(&p, "app").unwrap(), code, "")
            .unwrap();
    }
    let p = wait_pod(&client, "never", "Failed", |p| phase(p) == "Failed").await;
    let t = container_status(&p, "app")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    let p = wait_pod(&client, "onfailure", "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert_eq!(container_status(&p, "app").unwrap().restart_count, 0);
}

#[tokio::test]
async fn init_containers_run_one_at_a_time_before_the_app_containers() {
    let sim = Sim::start(1, true).await;
    let client = sim.client();
    let runtime = sim.agent.simulated_runtime("node-0").unwrap();
    let mut p = pod("layered", "node-0", vec![container("app", &[])]);
    p.spec.as_mut().unwrap().init_containers =
        Some(vec![container("first", &[]), container("second", &[])]);
    create(&client, &p).await;
    let init_running = |p: &Pod, name: &str| {
        p.status
            .as_ref()
            .and_then(|s| s.init_container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == name))
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.running.is_some())
    };
    let init_id = |p: &Pod, name: &str| {
        let cs = p.status.as_ref()?.init_container_statuses.as_ref()?;
        let id = cs.iter().find(|c| c.name == name)?.container_id.clone()?;
        Some(id.split_once("://")?.1.to_string())
    };
    let p = wait_pod(&client, "layered", "first init running", |p| {
        init_running(p, "first")
    })
    .await;
    assert_eq!(phase(&p), "Pending");
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("False"));
    assert_eq!(
        waiting_reason(&p, "app").as_deref(),
        Some("PodInitializing")
    );
    assert!(!init_running(&p, "second"));
    runtime
        .simulate_exit(&init_id(&p, "first").unwrap(), 0, "")
        .unwrap();
    let p = wait_pod(&client, "layered", "second init running", |p| {
        init_running(p, "second")
    })
    .await;
    runtime
        .simulate_exit(&init_id(&p, "second").unwrap(), 0, "")
        .unwrap();
    let p = wait_pod(&client, "layered", "app running", |p| is_running(p, "app")).await;
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
}

#[tokio::test]
async fn a_missing_config_map_holds_the_container_in_create_container_config_error() {
    let sim = Sim::start(1, true).await;
    let client = sim.client();
    let mut c = container("app", &[]);
    c.env = Some(vec![EnvVar {
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
    }]);
    create(&client, &pod("configured", "node-0", vec![c])).await;
    let p = wait_pod(&client, "configured", "CreateContainerConfigError", |p| {
        waiting_reason(p, "app").as_deref() == Some("CreateContainerConfigError")
    })
    .await;
    let message = container_status(&p, "app")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap()
        .message;
    assert_eq!(message.as_deref(), Some("configmap \"settings\" not found"));
    assert_eq!(phase(&p), "Pending");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("settings".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("greeting".into(), "hi".into())])),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    wait_pod(
        &client,
        "configured",
        "running once the ConfigMap exists",
        |p| is_running(p, "app"),
    )
    .await;
}

#[tokio::test]
async fn a_missing_config_map_volume_is_a_failed_mount() {
    let sim = Sim::start(1, true).await;
    let client = sim.client();
    let mut c = container("app", &[]);
    c.volume_mounts = Some(vec![VolumeMount {
        name: "cfg".into(),
        mount_path: "/etc/cfg".into(),
        ..VolumeMount::default()
    }]);
    let mut p = pod("unmounted", "node-0", vec![c]);
    p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "cfg".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "absent".into(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }]);
    create(&client, &p).await;
    let p = wait_pod(&client, "unmounted", "ContainerCreating", |p| {
        waiting_reason(p, "app").as_deref() == Some("ContainerCreating")
    })
    .await;
    assert_eq!(phase(&p), "Pending");
    let e = eventually("a FailedMount event", || async {
        events(&client, "unmounted", "FailedMount")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        e.message.as_deref(),
        Some("MountVolume.SetUp failed for volume \"cfg\" : configmap \"absent\" not found")
    );
    assert_eq!(e.type_.as_deref(), Some("Warning"));
}

#[tokio::test]
async fn deleting_a_pod_stops_it_and_the_agent_finishes_the_deletion() {
    let sim = Sim::start(1, true).await;
    let client = sim.client();
    let runtime = sim.agent.simulated_runtime("node-0").unwrap();
    let created = create(
        &client,
        &pod("doomed", "node-0", vec![container("app", &[])]),
    )
    .await;
    let uid = created.metadata.uid.unwrap();
    wait_pod(&client, "doomed", "running", |p| is_running(p, "app")).await;
    Api::<Pod>::namespaced(client.clone(), NS)
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&client, "doomed").await;
    eventually("the sandbox removed", || async {
        let left = runtime.list_pod_sandboxes().await.ok()?;
        (!left.iter().any(|s| s.metadata.uid == uid)).then_some(())
    })
    .await;
    assert!(!events(&client, "doomed", "Killing").await.is_empty());
}

#[tokio::test]
async fn sandboxes_of_pods_the_api_no_longer_has_are_collected() {
    let sim = Sim::start(1, true).await;
    let runtime = sim.agent.simulated_runtime("node-0").unwrap();
    let ghost = PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: "ghost".into(),
            namespace: NS.into(),
            uid: "ghost-uid".into(),
            attempt: 0,
        },
        ..PodSandboxConfig::default()
    };
    runtime.run_pod_sandbox(&ghost).await.unwrap();
    eventually("the orphaned sandbox removed", || async {
        let left = runtime.list_pod_sandboxes().await.ok()?;
        left.is_empty().then_some(())
    })
    .await;
}

/// 100 nodes and 500 pods in one process; the full 1,000 × 10,000 is
/// `a_thousand_simulated_nodes_run_ten_thousand_pods` (ignored: minutes in
/// debug builds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_simulated_nodes_run_five_hundred_pods() {
    scale(100, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes in debug builds; run with --release -- --ignored"]
async fn a_thousand_simulated_nodes_run_ten_thousand_pods() {
    scale(1_000, 10_000).await;
}

async fn scale(nodes: usize, pods: usize) {
    let env = TestEnv::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimulatedConfig::new(nodes, dir.path());
    config.port = 0;
    let started = std::time::Instant::now();
    let agent = kaji_agent::start_simulated(env.client(), config)
        .await
        .expect("simulated nodes start");
    let registered = started.elapsed();
    let client = env.client();
    let api = Api::<Pod>::namespaced(client.clone(), NS);
    let creates = (0..pods).map(|i| {
        let api = api.clone();
        async move {
            let p = pod(
                &format!("p-{i}"),
                &format!("node-{}", i % nodes),
                vec![container("app", &[])],
            );
            api.create(&PostParams::default(), &p).await.unwrap();
        }
    });
    futures::stream::iter(creates)
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    eprintln!("{pods} pods created after {:?}", started.elapsed());
    let limit = Duration::from_secs(if pods > 1_000 { 600 } else { 120 });
    // Count Running pods from a watch: polling lists of thousands of pods
    // would cost the API server more than running them.
    let running = tokio::time::timeout(limit, async {
        let mut phases = std::collections::HashMap::new();
        let events = kube::runtime::watcher(api.clone(), Default::default());
        futures::pin_mut!(events);
        let mut last_report = std::time::Instant::now();
        while let Some(event) = events.next().await {
            match event {
                Ok(kube::runtime::watcher::Event::Apply(p))
                | Ok(kube::runtime::watcher::Event::InitApply(p)) => {
                    phases.insert(p.metadata.name.clone().unwrap(), phase(&p) == "Running");
                }
                _ => continue,
            }
            let n = phases.values().filter(|r| **r).count();
            if n == pods {
                return n;
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!("{n} pods running after {:?}", started.elapsed());
                last_report = std::time::Instant::now();
            }
        }
        0
    })
    .await
    .expect("every pod Running in time");
    eprintln!(
        "{nodes} nodes registered in {registered:?}; {running} pods running after {:?}",
        started.elapsed()
    );
    assert_eq!(agent.pod_count(), pods);
    let leases = Api::<Lease>::namespaced(client.clone(), kaji_agent::LEASE_NAMESPACE)
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(leases.items.len(), nodes);
}

/// Answers every connection with an HTTP response of status `code`.
async fn http_server(code: u16) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let reply =
                    format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn http_and_tcp_readiness_probes_reach_the_pod() {
    use k8s_openapi::api::core::v1::{HTTPGetAction, Probe, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    let sim = Sim::start(1, false).await;
    let client = sim.client();
    let healthy = http_server(200).await;
    let failing = http_server(503).await;
    // A port nothing listens on: bind one, then free it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let probe = |http: Option<u16>, tcp: Option<u16>| Probe {
        http_get: http.map(|p| HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(i32::from(p)),
            ..HTTPGetAction::default()
        }),
        tcp_socket: tcp.map(|p| TCPSocketAction {
            port: IntOrString::Int(i32::from(p)),
            host: None,
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Probe::default()
    };
    let mut web = container("web", &[]);
    web.readiness_probe = Some(probe(Some(healthy), None));
    let mut broken = container("broken", &[]);
    broken.readiness_probe = Some(probe(Some(failing), None));
    let mut db = container("db", &[]);
    db.readiness_probe = Some(probe(None, Some(healthy)));
    let mut gone = container("gone", &[]);
    gone.readiness_probe = Some(probe(None, Some(closed)));
    create(
        &client,
        &pod("probed", "node-0", vec![web, broken, db, gone]),
    )
    .await;
    let ready = |p: &Pod, c: &str| container_status(p, c).is_some_and(|s| s.ready);
    let p = wait_pod(&client, "probed", "web and db ready", |p| {
        ready(p, "web") && ready(p, "db")
    })
    .await;
    assert!(!ready(&p, "broken"));
    assert!(!ready(&p, "gone"));
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    let unhealthy = eventually("Unhealthy events", || async {
        let e = events(&client, "probed", "Unhealthy").await;
        (e.len() >= 2).then_some(e)
    })
    .await;
    let messages: Vec<String> = unhealthy.iter().filter_map(|e| e.message.clone()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m == "Readiness probe failed: HTTP probe failed with statuscode: 503"),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Readiness probe failed: dial tcp 127.0.0.1:")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn network_probes_pass_at_made_up_pod_addresses_as_on_kwok() {
    use k8s_openapi::api::core::v1::{HTTPGetAction, Probe, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    let sim = Sim::start(1, false).await;
    assign_pod_cidr(&sim, "10.244.9.0/24").await;
    let client = sim.client();
    let mut web = container("web", &[]);
    web.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(3000),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(1),
        ..Probe::default()
    });
    let mut db = container("db", &[]);
    db.readiness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(5432),
            host: None,
        }),
        period_seconds: Some(1),
        ..Probe::default()
    });
    create(&client, &pod("probed", "node-0", vec![web, db])).await;
    let p = wait_pod(&client, "probed", "ready at a simulated address", |p| {
        condition(p, "Ready").as_deref() == Some("True")
    })
    .await;
    let ip = p.status.unwrap().pod_ip.unwrap();
    assert!(ip.starts_with("10.244.9."), "{ip}");
}
