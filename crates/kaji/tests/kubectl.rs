//! End-to-end: the real kubectl against a real `kaji up`.

mod common;

use common::Cluster;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: blue
"#;

#[test]
fn apply_is_created_then_unchanged_then_configured() {
    let c = Cluster::start();
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT));
    assert_eq!(out.success().trim(), "deployment.apps/web created");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT));
    assert_eq!(out.success().trim(), "deployment.apps/web unchanged");
    let changed = DEPLOYMENT
        .replace("nginx:1.25", "nginx:1.27")
        .replace("blue", "green");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(&changed));
    assert_eq!(out.success().trim(), "deployment.apps/web configured");
    let image = c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value} {.metadata.generation}"]);
    assert_eq!(image.success(), "nginx:1.27 green 2");
}

#[test]
fn get_prints_kubernetes_columns_and_yaml() {
    let c = Cluster::start();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT))
        .success();
    let out = c.kubectl(&["get", "deployments"]);
    let text = out.success();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(text.lines().nth(1).unwrap().starts_with("web "), "{text}");
    let wide = c.kubectl(&["get", "deploy", "-o", "wide"]);
    assert!(
        wide.success()
            .lines()
            .next()
            .unwrap()
            .contains("CONTAINERS"),
        "{}",
        wide.stdout
    );
    let yaml = c.kubectl(&["get", "deploy", "web", "-o", "yaml"]);
    let obj: serde_json::Value = serde_yaml::from_str(yaml.success()).unwrap();
    assert_eq!(obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert!(obj["metadata"]["uid"].as_str().unwrap().len() == 36);
    let ns = c.kubectl(&["get", "namespaces", "-o", "name"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            ns.success().contains(&format!("namespace/{n}")),
            "{}",
            ns.stdout
        );
    }
}

#[test]
fn describe_and_api_resources_work() {
    let c = Cluster::start();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT))
        .success();
    let out = c.kubectl(&["describe", "deployment", "web"]);
    let text = out.success();
    assert!(
        text.contains("Name:") && text.contains("web") && text.contains("nginx:1.25"),
        "{text}"
    );
    let res = c.kubectl(&["api-resources"]);
    let text = res.success();
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "configmaps",
        "cm",
        "customresourcedefinitions",
    ] {
        assert!(text.contains(line), "api-resources lacks {line}:\n{text}");
    }
}

#[test]
fn all_four_patch_types_apply() {
    let c = Cluster::start();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT))
        .success();
    c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"front"}}}"#,
    ])
    .success();
    c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":5}]"#,
    ])
    .success();
    // Strategic merge: the env list merges by name instead of being replaced.
    c.kubectl(&["patch", "deploy", "web", "--type=strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","env":[{"name":"EXTRA","value":"1"}]}]}}}}"#]).success();
    let out = c.kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.metadata.labels.tier} {.spec.replicas}",
    ]);
    assert_eq!(out.success(), "front 5");
    let env = c.kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[*].name}",
    ]);
    let mut names: Vec<&str> = env.success().split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["EXTRA", "MODE"]);
    let failed = c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
    ]);
    assert!(failed.failure().contains("invalid"), "{}", failed.stderr);
}

#[test]
fn errors_read_like_kubernetes() {
    let c = Cluster::start();
    let nf = c.kubectl(&["get", "configmap", "nope"]);
    assert_eq!(
        nf.failure().trim(),
        r#"Error from server (NotFound): configmaps "nope" not found"#
    );
    c.kubectl(&["create", "namespace", "dup"]).success();
    let dup = c.kubectl(&["create", "namespace", "dup"]);
    assert_eq!(
        dup.failure().trim(),
        r#"Error from server (AlreadyExists): namespaces "dup" already exists"#
    );
    let bad = c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n"),
    );
    assert!(
        bad.failure().contains(
            r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name""#
        ),
        "{}",
        bad.stderr
    );
    let no_ns = c.kubectl_stdin(
        &["apply", "-n", "missing", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"),
    );
    assert!(
        no_ns
            .failure()
            .contains(r#"namespaces "missing" not found"#),
        "{}",
        no_ns.stderr
    );
}

#[test]
fn selectors_and_chunked_lists() {
    let c = Cluster::start();
    for i in 0..7 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        c.kubectl(&[
            "create",
            "configmap",
            &format!("cm-{i}"),
            &format!("--from-literal=i={i}"),
        ])
        .success();
        c.kubectl(&[
            "label",
            "configmap",
            &format!("cm-{i}"),
            &format!("tier={tier}"),
        ])
        .success();
    }
    let out = c.kubectl(&["get", "cm", "-l", "tier=odd", "-o", "name"]);
    assert_eq!(out.success().lines().count(), 3, "{}", out.stdout);
    let out = c.kubectl(&[
        "get",
        "cm",
        "-l",
        "tier in (odd,even),tier!=odd",
        "-o",
        "name",
    ]);
    assert_eq!(out.success().lines().count(), 4, "{}", out.stdout);
    let out = c.kubectl(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.name=cm-3",
        "-o",
        "name",
    ]);
    assert_eq!(out.success().trim(), "configmap/cm-3");
    let out = c.kubectl(&["get", "cm", "--chunk-size=2", "-o", "name"]);
    let names: Vec<&str> = out
        .success()
        .lines()
        .filter(|l| l.starts_with("configmap/cm-"))
        .collect();
    assert_eq!(names.len(), 7, "{}", out.stdout);
    let bad = c.kubectl(&["get", "cm", "--field-selector", "spec.bogus=1"]);
    assert!(
        bad.failure()
            .contains("field label not supported: spec.bogus"),
        "{}",
        bad.stderr
    );
}

#[test]
fn edit_via_replace_and_delete() {
    let c = Cluster::start();
    c.kubectl(&["create", "configmap", "cfg", "--from-literal=a=1"])
        .success();
    let yaml = c.kubectl(&["get", "cm", "cfg", "-o", "yaml"]).stdout;
    let edited = yaml.replace("a: \"1\"", "a: \"2\"");
    c.kubectl_stdin(&["replace", "-f", "-"], Some(&edited))
        .success();
    // The same manifest again carries a stale resourceVersion: 409.
    let stale = c.kubectl_stdin(&["replace", "-f", "-"], Some(&edited));
    assert!(stale.failure().contains("Conflict"), "{}", stale.stderr);
    let out = c.kubectl(&["delete", "configmap", "cfg"]);
    // kubectl ≥ 1.33 appends "from default namespace".
    assert!(
        out.success().starts_with(r#"configmap "cfg" deleted"#),
        "{}",
        out.stdout
    );
    c.kubectl(&["get", "cm", "cfg"]).failure();
}

#[test]
fn health_endpoints_are_public() {
    let c = Cluster::start();
    assert_eq!(c.kubectl(&["get", "--raw", "/readyz"]).success(), "ok");
    assert_eq!(c.kubectl(&["get", "--raw", "/livez"]).success(), "ok");
    let version: serde_json::Value =
        serde_json::from_str(c.kubectl(&["get", "--raw", "/version"]).success()).unwrap();
    assert_eq!(
        (version["major"].as_str(), version["minor"].as_str()),
        (Some("1"), Some("32"))
    );
}

#[test]
fn server_side_apply_tracks_managers_and_reports_conflicts() {
    let c = Cluster::start();
    let out = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(DEPLOYMENT));
    assert_eq!(
        out.success().trim(),
        "deployment.apps/web serverside-applied"
    );
    let again = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(DEPLOYMENT));
    assert_eq!(
        again.success().trim(),
        "deployment.apps/web serverside-applied"
    );
    let rv = |c: &Cluster| {
        c.kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .stdout
    };
    // Let the controllers finish writing status first.
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .success();
    let before = rv(&c);
    c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(DEPLOYMENT))
        .success();
    assert_eq!(rv(&c), before, "re-applying the same intent must not write");
    let three = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
    let conflict = c.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(&three),
    );
    assert!(
        conflict
            .failure()
            .contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas"#),
        "{}",
        conflict.stderr
    );
    let replicas_only =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n";
    c.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(replicas_only),
    )
    .success();
    let managers = c.kubectl(&[
        "get",
        "deploy",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.managedFields[*].manager}",
    ]);
    assert_eq!(managers.success(), "3 kubectl other");
    // Dropping a field from the applied configuration removes it when nobody else owns it.
    let without_env = three.replace(
        "        env:\n        - name: MODE\n          value: blue\n",
        "",
    );
    c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&without_env))
        .success();
    let env = c.kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env}",
    ]);
    assert_eq!(env.success(), "");
}

#[test]
fn create_generators_send_protobuf_and_work() {
    let c = Cluster::start();
    c.kubectl(&[
        "create",
        "deployment",
        "gen",
        "--image=busybox:1.36",
        "--replicas=3",
    ])
    .success();
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=password=hunter2",
    ])
    .success();
    c.kubectl(&["create", "service", "clusterip", "svc", "--tcp=80:8080"])
        .success();
    c.kubectl(&["create", "serviceaccount", "robot"]).success();
    let out = c.kubectl(&[
        "get",
        "deploy/gen",
        "secret/s",
        "svc/svc",
        "sa/robot",
        "-o",
        "name",
    ]);
    assert_eq!(
        out.success().lines().collect::<Vec<_>>(),
        [
            "deployment.apps/gen",
            "secret/s",
            "service/svc",
            "serviceaccount/robot"
        ]
    );
    let pw = c.kubectl(&["get", "secret", "s", "-o", "jsonpath={.data.password}"]);
    assert_eq!(pw.success(), "aHVudGVyMg==");
    let port = c.kubectl(&[
        "get",
        "svc",
        "svc",
        "-o",
        "jsonpath={.spec.ports[0].targetPort}",
    ]);
    assert_eq!(port.success(), "8080");
}

#[test]
fn delete_all_and_dry_run_from_kubectl() {
    let c = Cluster::start();
    for i in 0..3 {
        c.kubectl(&["create", "configmap", &format!("x{i}")])
            .success();
    }
    let dry = c.kubectl(&["delete", "configmap", "x0", "--dry-run=server"]);
    assert!(
        dry.success().contains("deleted (server dry run)"),
        "{}",
        dry.stdout
    );
    c.kubectl(&["get", "cm", "x0"]).success();
    c.kubectl(&["delete", "configmap", "--all"]).success();
    let left = c.kubectl(&["get", "cm", "-o", "name"]);
    assert!(!left.success().contains("configmap/x"), "{}", left.stdout);
}

#[test]
fn edit_goes_through_the_editor_and_patches() {
    let c = Cluster::start();
    c.kubectl(&["create", "configmap", "ed", "--from-literal=color=one"])
        .success();
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["edit", "configmap", "ed"])
        .env("KUBE_EDITOR", "sed -i s/one/two/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/ed edited"
    );
    let v = c.kubectl(&["get", "cm", "ed", "-o", "jsonpath={.data.color}"]);
    assert_eq!(v.success(), "two");
}

#[test]
fn get_watch_prints_rows_as_changes_arrive() {
    let c = Cluster::start();
    let mut watch = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["get", "configmaps", "--watch", "--request-timeout=20s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    c.kubectl(&["create", "configmap", "seen-live", "--from-literal=a=b"])
        .success();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().next().unwrap_or("").starts_with("NAME"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("seen-live"))
        .unwrap_or_else(|| {
            panic!(
                "no live row in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(
        row.split_whitespace().nth(1),
        Some("1"),
        "DATA column: {row}"
    );
}

#[test]
fn metrics_count_requests_by_verb_and_resource() {
    let c = Cluster::start();
    c.kubectl(&["get", "configmaps"]).success();
    let m = c.kubectl(&["get", "--raw", "/metrics"]);
    let text = m.success();
    assert!(
        text.lines().any(|l| l.starts_with(
            r#"apiserver_request_total{verb="list",resource="configmaps",code="200"}"#
        )),
        "{text}"
    );
    assert!(text.contains("apiserver_request_duration_seconds_bucket"));
}

#[test]
fn explain_and_strict_client_validation_use_the_openapi_documents() {
    let c = Cluster::start();
    let out = c.kubectl(&["explain", "deployment.spec.replicas"]);
    let text = out.success();
    assert!(
        text.contains("KIND:") && text.contains("Deployment") && text.contains("replicas"),
        "{text}"
    );
    let bogus = DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  replicaz: 3\n");
    let rejected = c.kubectl_stdin(&["apply", "-f", "-"], Some(&bogus));
    assert!(
        rejected
            .failure()
            .contains(r#"unknown field "spec.replicaz""#),
        "{}",
        rejected.stderr
    );
    let accepted = c.kubectl_stdin(&["apply", "--validate=false", "-f", "-"], Some(&bogus));
    assert_eq!(accepted.success().trim(), "deployment.apps/web created");
}
