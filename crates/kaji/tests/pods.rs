//! The whole chain with real processes: `kaji up` with the process runtime,
//! `kubectl apply` of a Deployment, and then what a user does next — reach
//! the pod at its IP, read its logs, exec into it. Needs root for pod
//! network namespaces (CI runs as root); skips with a note otherwise.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::Cluster;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A process-runtime cluster on its own bridge and pod range (tests in
/// this file run side by side).
fn process_cluster_on(cidr: &str, bridge: &str) -> Option<Cluster> {
    if !is_root() || !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skipping: pod networking needs root and the CNI plugins");
        return None;
    }
    Some(Cluster::start_with(&[
        "--runtime",
        "process",
        "--cluster-cidr",
        cidr,
        "--bridge",
        bridge,
    ]))
}

fn process_cluster() -> Option<Cluster> {
    process_cluster_on("10.231.0.0/16", "kajit-pods")
}

/// The interfaces attached to `bridge` (the pods' veths).
fn attached_to(bridge: &str) -> usize {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// A Deployment of two sleeping pods, rolled out.
fn run_two_idle_pods(c: &Cluster) {
    c.kubectl(&[
        "create",
        "deployment",
        "idle",
        "--image=busybox",
        "--replicas=2",
        "--",
        "sleep",
        "3600",
    ])
    .success();
    c.kubectl(&["rollout", "status", "deployment/idle", "--timeout=60s"])
        .success();
}

#[test]
fn a_clean_stop_takes_the_pods_networks_down_with_it() {
    let Some(mut c) = process_cluster_on("10.238.0.0/16", "kajit-stop") else {
        return;
    };
    run_two_idle_pods(&c);
    assert_eq!(
        attached_to("kajit-stop"),
        2,
        "each pod has a veth on the bridge"
    );
    c.stop();
    assert_eq!(
        attached_to("kajit-stop"),
        0,
        "a stopped kaji up leaves no pod network behind"
    );
}

#[test]
fn a_restart_after_sigkill_collects_the_pods_the_dead_run_left_on_its_bridge() {
    let (cidr, bridge) = ("10.239.0.0/16", "kajit-stray");
    let Some(mut dead) = process_cluster_on(cidr, bridge) else {
        return;
    };
    run_two_idle_pods(&dead);
    dead.kill9();
    // Its data dir goes with it, so nothing on disk remembers these pods.
    drop(dead);
    let left = kaji_cni::netns::attached_to(bridge).expect("ip lists the bridge");
    assert_eq!(
        left.len(),
        2,
        "SIGKILL leaves the pods' namespaces: {left:?}"
    );
    // Whatever still runs in them must go too (pods normally die with
    // kaji up, so this is usually empty).
    let orphans: Vec<u32> = left
        .iter()
        .flat_map(|ns| {
            let out = std::process::Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .expect("ip runs");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();

    let Some(_next) = process_cluster_on(cidr, bridge) else {
        return;
    };
    // The node agent starts after the API server answers; give it time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut still = kaji_cni::netns::attached_to(bridge).expect("ip lists the bridge");
    while !still.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        still = kaji_cni::netns::attached_to(bridge).expect("ip lists the bridge");
    }
    assert!(still.is_empty(), "stray namespaces remain: {still:?}");
    for ns in &left {
        assert!(!kaji_cni::netns::path(ns).exists(), "{ns} still mounted");
    }
    for pid in orphans {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie_or_gone = state.is_empty()
            || state
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
        assert!(zombie_or_gone, "orphan {pid} still runs: {state}");
    }
}

const SERVER: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: python:3
        command: ["python3", "-u", "-m", "http.server", "8080"]
        workingDir: /srv/site
        env:
        - name: GREETING
          valueFrom:
            configMapKeyRef: {name: site, key: greeting}
        volumeMounts:
        - {name: site, mountPath: /srv/site}
        readinessProbe:
          httpGet: {path: /index.html, port: 8080}
          periodSeconds: 1
      volumes:
      - name: site
        configMap: {name: site}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: site
data:
  index.html: "<h1>served by kaji</h1>\n"
  greeting: "hello from a configmap"
"#;

/// One plain HTTP GET; returns the whole response.
fn http_get(ip: &str, port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().unwrap(),
        Duration::from_secs(5),
    )
    .expect("the pod answers at its IP");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn a_deployment_runs_real_processes_reachable_at_their_pod_ips() {
    let Some(c) = process_cluster() else { return };
    c.kubectl_stdin(&["apply", "-f", "-"], Some(SERVER))
        .success();
    let status = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(status.success().contains("successfully rolled out"));

    let ips = c
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ])
        .success()
        .to_string();
    let ips: Vec<&str> = ips.split_whitespace().collect();
    assert_eq!(ips.len(), 2, "{ips:?}");
    assert_ne!(ips[0], ips[1]);
    let cidr = c
        .kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].spec.podCIDR}"])
        .success()
        .to_string();
    assert!(cidr.starts_with("10.231."), "{cidr}");
    for ip in &ips {
        assert!(ip.starts_with("10.231."), "pod IP {ip} outside {cidr}");
        let response = http_get(ip, 8080, "/index.html");
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(
            response.contains("<h1>served by kaji</h1>"),
            "the configMap volume is the server's directory: {response}"
        );
    }

    // The server logged the requests, and `kubectl logs` relays them from
    // the node agent.
    let pod = c
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
        .success()
        .to_string();
    let logs = c.kubectl(&["logs", &pod]);
    assert!(
        logs.success().contains("\"GET /index.html HTTP/1."),
        "{}",
        logs.stdout
    );
    let tail = c.kubectl(&["logs", &pod, "--tail=1"]);
    assert_eq!(tail.success().lines().count(), 1, "{}", tail.stdout);
    let wrong = c.kubectl(&["logs", &pod, "-c", "nope"]);
    assert!(
        wrong
            .failure()
            .contains(&format!("container nope is not valid for pod {pod}")),
        "{}",
        wrong.stderr
    );

    // exec runs in the pod's network namespace with the pod's environment.
    let exec = c.kubectl(&[
        "exec",
        &pod,
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\"; ip -4 -o addr show eth0",
    ]);
    let out = exec.success();
    assert!(out.contains("hello from a configmap"), "{out}");
    let own_ip = c
        .kubectl(&["get", "pod", &pod, "-o", "jsonpath={.status.podIP}"])
        .success()
        .to_string();
    assert!(out.contains(&format!("inet {own_ip}/")), "{out}");
    let stdin = c.kubectl_stdin(
        &["exec", "-i", &pod, "--", "tr", "a-z", "A-Z"],
        Some("shout\n"),
    );
    assert_eq!(stdin.success(), "SHOUT\n");
    let failed = c.kubectl(&["exec", &pod, "--", "sh", "-c", "exit 3"]);
    assert!(
        failed
            .failure()
            .contains("command terminated with exit code 3"),
        "{}",
        failed.stderr
    );

    // Deleting the Deployment stops the processes: the pods' IPs stop
    // answering and the pods go away.
    c.kubectl(&["delete", "deployment", "web", "--wait=true"])
        .success();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = c
            .kubectl(&["get", "pods", "-l", "app=web", "-o", "name"])
            .success()
            .to_string();
        if left.trim().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "pods left: {left}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for ip in &ips {
        let refused = std::net::TcpStream::connect_timeout(
            &format!("{ip}:8080").parse().unwrap(),
            Duration::from_secs(1),
        );
        assert!(refused.is_err(), "{ip}:8080 still answers");
    }
}
