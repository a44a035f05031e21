//! Status computation from runtime states, without a runtime.

use super::*;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kaji_runtime::{ContainerMetadata, PodSandboxMetadata, PodSandboxStatus, SandboxState};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

fn pod(policy: &str, containers: &[&str], init: &[&str]) -> Pod {
    let c = |n: &&str| Container {
        name: n.to_string(),
        image: Some("busybox".into()),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("uid-1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            containers: containers.iter().map(c).collect(),
            init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn sandbox() -> PodSandboxStatus {
    PodSandboxStatus {
        id: "sb".into(),
        metadata: PodSandboxMetadata {
            name: "p".into(),
            namespace: "default".into(),
            uid: "uid-1".into(),
            attempt: 0,
        },
        state: SandboxState::Ready,
        created_at: at(0),
        ip: Some("10.0.0.7".parse().unwrap()),
        labels: BTreeMap::new(),
    }
}

fn container(
    name: &str,
    attempt: u32,
    state: ContainerState,
    exit: Option<i32>,
) -> ContainerStatus {
    ContainerStatus {
        id: format!("{name}-{attempt}"),
        sandbox_id: "sb".into(),
        metadata: ContainerMetadata {
            name: name.into(),
            attempt,
        },
        state,
        created_at: at(i64::from(attempt) * 10),
        started_at: Some(at(i64::from(attempt) * 10 + 1)),
        finished_at: exit.map(|_| at(i64::from(attempt) * 10 + 5)),
        exit_code: exit,
        reason: String::new(),
        message: String::new(),
        image: "busybox".into(),
        log_path: "/dev/null".into(),
    }
}

fn compute_for(
    pod: &Pod,
    containers: Vec<ContainerStatus>,
    waiting: HashMap<String, (String, String)>,
    probes: &dyn Fn(&str) -> ProbeView,
) -> PodStatus {
    let state = PodRuntimeState {
        sandboxes: vec![sandbox()],
        containers,
    };
    compute(&StatusInput {
        pod,
        state: &state,
        waiting: &waiting,
        probes,
        host_ips: &["192.0.2.2".to_string()],
        pod_ips: &["10.0.0.7".to_string()],
        runtime_name: "kaji-test",
        terminating: false,
        now: Timestamp::from_second(1_700_000_100).unwrap(),
    })
}

fn no_probes(_: &str) -> ProbeView {
    ProbeView::default()
}

fn condition_of<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
    s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == t)
        .unwrap()
}

#[test]
fn a_running_container_makes_a_running_ready_pod() {
    let p = pod("Always", &["app"], &[]);
    let s = compute_for(
        &p,
        vec![container("app", 0, ContainerState::Running, None)],
        HashMap::new(),
        &no_probes,
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(condition_of(&s, "Ready").status, "True");
    assert_eq!(condition_of(&s, "PodReadyToStartContainers").status, "True");
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert!(cs.ready);
    assert_eq!(cs.started, Some(true));
    assert_eq!(cs.container_id.as_deref(), Some("kaji-test://app-0"));
    assert!(cs.state.as_ref().unwrap().running.is_some());
    assert_eq!(s.pod_ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(s.host_ip.as_deref(), Some("192.0.2.2"));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
}

#[test]
fn a_failed_container_that_never_restarts_fails_the_pod() {
    let p = pod("Never", &["app"], &[]);
    let s = compute_for(
        &p,
        vec![container("app", 0, ContainerState::Exited, Some(1))],
        HashMap::new(),
        &no_probes,
    );
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let t = s.container_statuses.as_ref().unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(t.exit_code, 1);
    assert_eq!(t.reason.as_deref(), Some("Error"));
}

#[test]
fn completed_containers_make_a_succeeded_pod() {
    let p = pod("OnFailure", &["app"], &[]);
    let s = compute_for(
        &p,
        vec![container("app", 0, ContainerState::Exited, Some(0))],
        HashMap::new(),
        &no_probes,
    );
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(
        condition_of(&s, "Ready").reason.as_deref(),
        Some("PodCompleted")
    );
}

#[test]
fn a_container_in_back_off_waits_with_its_last_termination() {
    let p = pod("Always", &["app"], &[]);
    let waiting = HashMap::from([(
        "app".to_string(),
        ("CrashLoopBackOff".to_string(), "back-off 10s".to_string()),
    )]);
    let s = compute_for(
        &p,
        vec![
            container("app", 0, ContainerState::Exited, Some(1)),
            container("app", 1, ContainerState::Exited, Some(1)),
        ],
        waiting,
        &no_probes,
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.restart_count, 1);
    let w = cs.state.as_ref().unwrap().waiting.clone().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    let last = cs.last_state.as_ref().unwrap().terminated.clone().unwrap();
    assert_eq!(last.exit_code, 1);
    assert_eq!(last.container_id.as_deref(), Some("kaji-test://app-1"));
    assert_eq!(condition_of(&s, "ContainersReady").status, "False");
}

#[test]
fn a_pod_waits_in_pending_while_its_init_containers_run() {
    let p = pod("Always", &["app"], &["setup", "migrate"]);
    let s = compute_for(
        &p,
        vec![
            container("setup", 0, ContainerState::Exited, Some(0)),
            container("migrate", 0, ContainerState::Running, None),
        ],
        HashMap::new(),
        &no_probes,
    );
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let init = condition_of(&s, "Initialized");
    assert_eq!(init.status, "False");
    assert_eq!(
        init.message.as_deref(),
        Some("containers with incomplete status: [migrate]")
    );
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        app.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    let setup = &s.init_container_statuses.as_ref().unwrap()[0];
    assert!(setup.ready, "a completed init container counts as ready");
}

#[test]
fn a_failed_init_container_under_never_fails_the_pod() {
    let p = pod("Never", &["app"], &["setup"]);
    let s = compute_for(
        &p,
        vec![container("setup", 0, ContainerState::Exited, Some(2))],
        HashMap::new(),
        &no_probes,
    );
    assert_eq!(s.phase.as_deref(), Some("Failed"));
}

#[test]
fn readiness_follows_the_probe_and_transition_times_stay_while_unchanged() {
    let mut p = pod("Always", &["app"], &[]);
    let running = || vec![container("app", 0, ContainerState::Running, None)];
    let unready = |_: &str| ProbeView {
        ready: Some(false),
        started: None,
    };
    let s = compute_for(&p, running(), HashMap::new(), &unready);
    assert_eq!(condition_of(&s, "Ready").status, "False");
    assert_eq!(
        condition_of(&s, "Ready").message.as_deref(),
        Some("containers with unready status: [app]")
    );
    // Pretend the Ready condition has been False since long ago.
    let mut old = s.clone();
    for c in old.conditions.as_mut().unwrap() {
        c.last_transition_time = Some(Time(Timestamp::from_second(1_600_000_000).unwrap()));
    }
    p.status = Some(old);
    let again = compute_for(&p, running(), HashMap::new(), &unready);
    assert_eq!(
        condition_of(&again, "Ready").last_transition_time,
        Some(Time(Timestamp::from_second(1_600_000_000).unwrap()))
    );
    let ready = |_: &str| ProbeView {
        ready: Some(true),
        started: None,
    };
    let flipped = compute_for(&p, running(), HashMap::new(), &ready);
    assert_eq!(condition_of(&flipped, "Ready").status, "True");
    assert_ne!(
        condition_of(&flipped, "Ready").last_transition_time,
        Some(Time(Timestamp::from_second(1_600_000_000).unwrap()))
    );
}

#[test]
fn qos_classes_follow_requests_and_limits() {
    let with = |limits: &[(&str, &str)], requests: &[(&str, &str)]| {
        let mut p = pod("Always", &["app"], &[]);
        let q = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        p.spec.as_mut().unwrap().containers[0].resources = Some(ResourceRequirements {
            limits: q(limits),
            requests: q(requests),
            ..ResourceRequirements::default()
        });
        qos_class(&p)
    };
    assert_eq!(with(&[], &[]), "BestEffort");
    assert_eq!(with(&[("cpu", "1"), ("memory", "1Gi")], &[]), "Guaranteed");
    assert_eq!(
        with(&[("cpu", "1"), ("memory", "1Gi")], &[("cpu", "500m")]),
        "Burstable"
    );
    assert_eq!(with(&[], &[("memory", "1Gi")]), "Burstable");
}

#[test]
fn a_probed_container_is_not_ready_before_its_probe_reports() {
    let mut p = pod("Always", &["app"], &[]);
    p.spec.as_mut().unwrap().containers[0].readiness_probe =
        Some(k8s_openapi::api::core::v1::Probe::default());
    let s = compute_for(
        &p,
        vec![container("app", 0, ContainerState::Running, None)],
        HashMap::new(),
        &no_probes,
    );
    assert!(!s.container_statuses.as_ref().unwrap()[0].ready);
    assert_eq!(condition_of(&s, "Ready").status, "False");
}
