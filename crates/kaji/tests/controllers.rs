//! The controllers inside `kaji up`, and as their own process, driven by kubectl.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

const REPLICASET: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: rs
spec:
  replicas: 3
  selector:
    matchLabels: {app: rs}
  template:
    metadata:
      labels: {app: rs}
    spec:
      containers:
      - name: c
        image: busybox:1.36
"#;

/// Polls `check` until it returns true or 20 s pass.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

fn pod_count(c: &Cluster, ns: &str) -> usize {
    c.kubectl(&["get", "pods", "-n", ns, "-o", "name"])
        .stdout
        .lines()
        .count()
}

#[test]
fn kubectl_delete_namespace_completes_and_removes_its_content() {
    let c = Cluster::start();
    c.kubectl(&["create", "namespace", "tmp"]).success();
    c.kubectl(&["create", "configmap", "a", "-n", "tmp"])
        .success();
    c.kubectl(&["create", "deployment", "d", "--image=x", "-n", "tmp"])
        .success();
    // kubectl waits until the namespace is really gone.
    let out = c.kubectl(&["delete", "namespace", "tmp", "--timeout=30s"]);
    assert!(
        out.success().starts_with(r#"namespace "tmp" deleted"#),
        "{}",
        out.stdout
    );
    c.kubectl(&["get", "namespace", "tmp"]).failure();
}

#[test]
fn replicaset_keeps_its_pods_and_garbage_collection_removes_them() {
    let c = Cluster::start();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(REPLICASET))
        .success();
    eventually("3 pods", || pod_count(&c, "default") == 3);
    let owners = c.kubectl(&[
        "get",
        "pods",
        "-o",
        "jsonpath={.items[*].metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(owners.success(), "rs rs rs");
    c.kubectl(&["scale", "rs", "rs", "--replicas=1"]).success();
    eventually("1 pod", || pod_count(&c, "default") == 1);
    c.kubectl(&["delete", "rs", "rs"]).success();
    eventually("pods collected", || pod_count(&c, "default") == 0);
}

#[test]
fn controller_manager_runs_as_its_own_process() {
    let tmp = tempfile::tempdir().unwrap();
    let mut api = std::process::Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(["apiserver", "--data-dir"])
        .arg(tmp.path())
        .args(["--listen", "127.0.0.1:0", "--log", "warn"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(api.stdout.take().unwrap()));
    assert!(lines.any(|l| l.map(|l| l.starts_with("kaji is ready")).unwrap_or(false)));
    std::thread::spawn(move || for _ in lines {});
    let kubeconfig = tmp.path().join("kubeconfig");
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = std::process::Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&kubeconfig).args(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    };
    kubectl(&["apply", "-f", "-"], Some(REPLICASET));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        kubectl(&["get", "pods", "-o", "name"], None)
            .lines()
            .count(),
        0,
        "no controllers run in `kaji apiserver`"
    );
    let mut cm = std::process::Command::new(env!("CARGO_BIN_EXE_kaji"))
        .args(["controller-manager", "--log", "warn", "--kubeconfig"])
        .arg(&kubeconfig)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pods = 0;
    while Instant::now() < deadline && pods != 3 {
        std::thread::sleep(Duration::from_millis(200));
        pods = kubectl(&["get", "pods", "-o", "name"], None)
            .lines()
            .count();
    }
    let _ = cm.kill();
    let _ = cm.wait();
    let _ = api.kill();
    let _ = api.wait();
    assert_eq!(pods, 3);
}

#[test]
fn deployments_make_replicasets_and_pods_with_events_and_services_get_endpoint_slices() {
    let c = Cluster::start();
    c.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
        "--port=80",
    ])
    .success();
    eventually("2 pods", || pod_count(&c, "default") == 2);
    let rs = c.kubectl(&["get", "rs", "-o", "jsonpath={.items[0].metadata.name} {.items[0].metadata.annotations.deployment\\.kubernetes\\.io/revision}"]);
    let text = rs.success().to_string();
    assert!(text.starts_with("web-") && text.ends_with(" 1"), "{text}");
    eventually("SuccessfulCreate events", || {
        c.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "reason=SuccessfulCreate",
            "-o",
            "name",
        ])
        .stdout
        .lines()
        .count()
            >= 1
    });
    c.kubectl(&["scale", "deployment", "web", "--replicas=3"])
        .success();
    eventually("a ScalingReplicaSet event on the Deployment", || {
        let out = c.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "reason=ScalingReplicaSet,involvedObject.kind=Deployment",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        out.stdout.contains("Scaled up replica set web-") && out.stdout.contains("from 2 to 3")
    });
    let history = c.kubectl(&["rollout", "history", "deployment/web"]);
    assert!(history.success().contains("REVISION"), "{}", history.stdout);
    c.kubectl(&["expose", "deployment", "web", "--port=80"])
        .success();
    eventually("an EndpointSlice for the service", || {
        c.kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "name",
        ])
        .stdout
        .lines()
        .count()
            == 1
    });
}
