//! `kubectl rollout` against a whole `kaji up` cluster: the deployment
//! controller, the scheduler and a node agent (simulated pods, which go
//! Running and Ready like real ones) together, as a user drives them.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: example.com/web:1
        command: ["sleep", "3600"]
"#;

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

fn jsonpath(c: &Cluster, args: &[&str], path: &str) -> String {
    let mut all: Vec<&str> = args.to_vec();
    let expr = format!("jsonpath={path}");
    all.extend(["-o", &expr]);
    c.kubectl(&all).success().trim().to_string()
}

fn replicaset_images(c: &Cluster) -> Vec<(String, String)> {
    let out = jsonpath(
        c,
        &["get", "rs", "-l", "app=web"],
        "{range .items[*]}{.spec.template.spec.containers[0].image}={.spec.replicas}{\"\\n\"}{end}",
    );
    let mut v: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

fn rolled_out(c: &Cluster) {
    let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(
        out.success()
            .contains("deployment \"web\" successfully rolled out"),
        "{}",
        out.stdout
    );
}

#[test]
fn rollout_status_history_and_undo_behave_as_on_kubernetes() {
    let c = Cluster::start();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT))
        .success();
    rolled_out(&c);
    assert_eq!(
        jsonpath(&c, &["get", "deployment", "web"], "{.status.readyReplicas}"),
        "3"
    );

    c.kubectl(&["set", "image", "deployment/web", "app=example.com/web:2"])
        .success();
    rolled_out(&c);
    assert_eq!(
        replicaset_images(&c),
        vec![
            ("example.com/web:1".into(), "0".into()),
            ("example.com/web:2".into(), "3".into())
        ]
    );
    let history = c.kubectl(&["rollout", "history", "deployment/web"]);
    let lines: Vec<&str> = history.success().lines().collect();
    assert!(lines[0].starts_with("deployment.apps/web"), "{lines:?}");
    assert!(lines[1].starts_with("REVISION"), "{lines:?}");
    assert!(
        lines[2].starts_with("1 ") && lines[3].starts_with("2 "),
        "{lines:?}"
    );

    let undo = c.kubectl(&["rollout", "undo", "deployment/web"]);
    assert_eq!(undo.success().trim(), "deployment.apps/web rolled back");
    rolled_out(&c);
    assert_eq!(
        jsonpath(
            &c,
            &["get", "deployment", "web"],
            "{.spec.template.spec.containers[0].image}"
        ),
        "example.com/web:1"
    );
    // Rolling back reuses revision 1's ReplicaSet, which becomes revision 3.
    assert_eq!(
        replicaset_images(&c),
        vec![
            ("example.com/web:1".into(), "3".into()),
            ("example.com/web:2".into(), "0".into())
        ]
    );
    let revisions = jsonpath(
        &c,
        &["get", "deployment", "web"],
        "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    );
    assert_eq!(revisions, "3");
    let ready = jsonpath(
        &c,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector=status.phase=Running",
        ],
        "{.items[*].metadata.name}",
    );
    assert_eq!(ready.split_whitespace().count(), 3, "{ready}");
}

#[test]
fn rollout_restart_pause_and_resume() {
    let c = Cluster::start();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT))
        .success();
    rolled_out(&c);
    let first_pods = jsonpath(
        &c,
        &["get", "pods", "-l", "app=web"],
        "{.items[*].metadata.name}",
    );

    assert_eq!(
        c.kubectl(&["rollout", "restart", "deployment/web"])
            .success()
            .trim(),
        "deployment.apps/web restarted"
    );
    rolled_out(&c);
    let restarted_at = jsonpath(
        &c,
        &["get", "deployment", "web"],
        "{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    );
    assert!(!restarted_at.is_empty());
    eventually("every pod replaced after the restart", || {
        let now = jsonpath(
            &c,
            &["get", "pods", "-l", "app=web"],
            "{.items[*].metadata.name}",
        );
        now.split_whitespace().count() == 3
            && now
                .split_whitespace()
                .all(|p| !first_pods.split_whitespace().any(|old| old == p))
    });

    assert_eq!(
        c.kubectl(&["rollout", "pause", "deployment/web"])
            .success()
            .trim(),
        "deployment.apps/web paused"
    );
    let before = replicaset_images(&c).len();
    c.kubectl(&["set", "image", "deployment/web", "app=example.com/web:2"])
        .success();
    // A paused Deployment records the change but rolls nothing out.
    eventually("the paused deployment's generation observed", || {
        jsonpath(
            &c,
            &["get", "deployment", "web"],
            "{.metadata.generation} {.status.observedGeneration}",
        )
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .all(|w| w[0] == w[1])
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(replicaset_images(&c).len(), before);
    let progressing = jsonpath(
        &c,
        &["get", "deployment", "web"],
        "{.status.conditions[?(@.type==\"Progressing\")].reason}",
    );
    assert_eq!(progressing, "DeploymentPaused");

    assert_eq!(
        c.kubectl(&["rollout", "resume", "deployment/web"])
            .success()
            .trim(),
        "deployment.apps/web resumed"
    );
    rolled_out(&c);
    assert!(replicaset_images(&c)
        .iter()
        .any(|(image, replicas)| image == "example.com/web:2" && replicas == "3"));
}

#[test]
fn a_stuck_rollout_exceeds_its_progress_deadline_and_scaling_is_proportional() {
    let c = Cluster::start();
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            &DEPLOYMENT
                .replace("replicas: 3", "replicas: 10\n  progressDeadlineSeconds: 3\n  strategy:\n    rollingUpdate: {maxSurge: 3, maxUnavailable: 2}"),
        ),
    )
    .success();
    rolled_out(&c);

    // The new pods can never be scheduled, so the rollout cannot progress.
    c.kubectl(&[
        "patch",
        "deployment/web",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"kaji.test/no-such":"node"}}}}}"#,
    ])
    .success();
    let status = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        status
            .failure()
            .contains("deployment \"web\" exceeded its progress deadline"),
        "{}",
        status.stderr
    );
    assert_eq!(
        jsonpath(
            &c,
            &["get", "deployment", "web"],
            "{.status.conditions[?(@.type==\"Progressing\")].reason}"
        ),
        "ProgressDeadlineExceeded"
    );
    // 10 replicas, 2 unavailable allowed and 3 surge: old keeps 8, new gets 5.
    // (old, new) ReplicaSet sizes, told apart by their revision.
    let split = || {
        let out = jsonpath(
            &c,
            &["get", "rs", "-l", "app=web"],
            "{range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision}={.spec.replicas}{\"\\n\"}{end}",
        );
        let mut by_revision: Vec<(i64, i64)> = out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(r, n)| (r.parse().unwrap(), n.parse().unwrap()))
            .collect();
        by_revision.sort();
        assert_eq!(by_revision.len(), 2, "{out}");
        (by_revision[0].1, by_revision[1].1)
    };
    assert_eq!(split(), (8, 5));

    // Scaling mid-rollout spreads the change over both ReplicaSets in
    // proportion to their sizes, keeping replicas + maxSurge in total.
    c.kubectl(&["scale", "deployment/web", "--replicas=20"])
        .success();
    eventually("proportional scaling", || {
        let (old, new) = split();
        old + new == 23 && old > 8 && new > 5
    });
    // Each grows by its share of the new maximum (23) over the old (13):
    // 8 * 23/13 ≈ 14 and 5 * 23/13 ≈ 9, as Kubernetes rounds them.
    assert_eq!(split(), (14, 9), "proportional split of 10 extra replicas");
}
