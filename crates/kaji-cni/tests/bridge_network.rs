//! End-to-end tests against the real CNI plugins: namespaces, a bridge and
//! host-local leases, created per test and removed even when a test fails.
//!
//! They need root and `/usr/lib/cni/bridge`; without either they print a
//! note and pass. Each test owns a bridge `kjt<n>`, namespaces `kjt<n>-*`
//! and the CIDR `10.213.<n>.0/24`, so they run in parallel.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kaji_cni::{netns, CniConfig, CniError, CniNetwork};
use kaji_runtime::{PodNetwork, PodSandboxMetadata};

/// Whether the host can run these tests; prints why not.
fn can_run(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false);
    if !root {
        eprintln!("skipping {test}: needs root");
        return false;
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skipping {test}: /usr/lib/cni/bridge is missing (apt-get install containernetworking-plugins)");
        return false;
    }
    true
}

/// Everything one test creates on the host, removed on drop.
struct Fixture {
    n: u8,
    bridge: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    state: tempfile::TempDir,
}

impl Fixture {
    /// Clears whatever a crashed earlier run with the same `n` left behind.
    fn new(n: u8) -> Self {
        let f = Fixture {
            n,
            bridge: format!("kjt{n}"),
            namespaces: Vec::new(),
            children: Vec::new(),
            state: tempfile::tempdir().unwrap(),
        };
        let _ = Command::new("ip").args(["link", "del", &f.bridge]).output();
        for suffix in ["a", "b", "c"] {
            let _ = netns::delete(&f.ns_name(suffix));
        }
        f
    }

    fn ns_name(&self, suffix: &str) -> String {
        format!("kjt{}-{suffix}", self.n)
    }

    fn cidr(&self) -> String {
        format!("10.213.{}.0/24", self.n)
    }

    fn config(&self) -> CniConfig {
        CniConfig {
            bridge: self.bridge.clone(),
            ..CniConfig::new(self.state.path().join("cni"))
        }
    }

    fn network(&self) -> CniNetwork {
        CniNetwork::new(self.config()).unwrap()
    }

    fn netns(&mut self, suffix: &str) -> PathBuf {
        let name = self.ns_name(suffix);
        let path = netns::create(&name).unwrap();
        self.namespaces.push(name);
        path
    }

    /// Starts an HTTP server on 0.0.0.0:8080 inside namespace `suffix`:
    /// this test binary again, running [`pod_http_server_helper`].
    fn serve_http(&mut self, suffix: &str) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns_name(suffix)])
            .arg(std::env::current_exe().unwrap())
            .args(["pod_http_server_helper", "--exact", "--nocapture"])
            .env(SERVE_ENV, "0.0.0.0:8080")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Only the processes this test started, by their own handles.
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in &self.namespaces {
            let _ = netns::delete(name);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

fn pod(name: &str) -> PodSandboxMetadata {
    PodSandboxMetadata {
        name: name.into(),
        namespace: "default".into(),
        uid: format!("uid-{name}"),
        attempt: 0,
    }
}

fn v4(ip: std::net::IpAddr) -> Ipv4Addr {
    match ip {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("expected IPv4, got {other}"),
    }
}

/// Set to the address to listen on when this binary is a pod's server.
const SERVE_ENV: &str = "KAJI_CNI_TEST_SERVE";
/// Set to the address to GET from when this binary is a pod's client.
const GET_ENV: &str = "KAJI_CNI_TEST_GET";

/// GETs `/` from `addr`, retrying while the server starts; the status line.
fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let attempt =
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out.lines().next().unwrap_or_default().to_string())
            });
        match attempt {
            Ok(line) if !line.is_empty() => return Ok(line),
            Err(e) if Instant::now() > deadline => return Err(e),
            _ if Instant::now() > deadline => return Ok(String::new()),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The status line the host gets from `ip:8080`.
fn http_get_from_host(ip: Ipv4Addr) -> String {
    http_get(SocketAddr::from((ip, 8080))).unwrap_or_else(|e| format!("no answer: {e}"))
}

/// The status line a client inside namespace `ns` gets from `ip:8080`:
/// this test binary again, running [`pod_http_client_helper`].
fn http_get_from_netns(ns: &str, ip: Ipv4Addr) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(std::env::current_exe().unwrap())
        .args([
            "pod_http_client_helper",
            "--exact",
            "--nocapture",
            "--quiet",
        ])
        .env(GET_ENV, format!("{ip}:8080"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("status: "))
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "no answer: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Not a test on its own: when [`SERVE_ENV`] is set this process is the
/// HTTP server inside a pod namespace, answering 200 until killed.
#[test]
fn pod_http_server_helper() {
    let Ok(addr) = std::env::var(SERVE_ENV) else {
        return;
    };
    let listener = TcpListener::bind(addr).unwrap();
    for mut stream in listener.incoming().flatten() {
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
    }
}

/// Not a test on its own: when [`GET_ENV`] is set this process is a client
/// inside a pod namespace and prints the status line it got.
#[test]
fn pod_http_client_helper() {
    let Ok(addr) = std::env::var(GET_ENV) else {
        return;
    };
    match http_get(addr.parse().unwrap()) {
        Ok(line) => println!("status: {line}"),
        Err(e) => println!("error: {e}"),
    }
}

fn nat_rules() -> Option<String> {
    let out = Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip_forward() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default()
}

#[tokio::test]
async fn two_pods_get_distinct_addresses_and_reach_a_server_from_the_host_and_each_other() {
    if !can_run("two_pods_get_distinct_addresses") {
        return;
    }
    let mut f = Fixture::new(1);
    let (ns_a, ns_b) = (f.netns("a"), f.netns("b"));
    let net = f.network();
    net.set_pod_cidr(&f.cidr()).await.unwrap();
    assert!(net.ready());

    let a = v4(net.attach("kjt1-a", &pod("a"), &ns_a).await.unwrap());
    let b = v4(net.attach("kjt1-b", &pod("b"), &ns_b).await.unwrap());
    assert_ne!(a, b);
    let cidr = net.pod_cidr().unwrap();
    assert!(
        cidr.contains(a) && cidr.contains(b),
        "{a} {b} outside {cidr}"
    );
    assert_ne!(a, cidr.gateway());

    f.serve_http("a");
    assert_eq!(http_get_from_host(a), "HTTP/1.0 200 OK");
    assert_eq!(http_get_from_netns(&f.ns_name("b"), a), "HTTP/1.0 200 OK");

    net.detach("kjt1-a", &ns_a).await.unwrap();
    net.detach("kjt1-b", &ns_b).await.unwrap();
}

#[tokio::test]
async fn attaching_adds_no_masquerade_rule_and_leaves_forwarding_alone() {
    if !can_run("attaching_adds_no_masquerade_rule") {
        return;
    }
    let before_nat = nat_rules();
    let before_forward = ip_forward();
    let mut f = Fixture::new(2);
    let ns = f.netns("a");
    let net = f.network();
    net.set_pod_cidr(&f.cidr()).await.unwrap();
    net.attach("kjt2-a", &pod("a"), &ns).await.unwrap();

    assert_eq!(ip_forward(), before_forward, "ip_forward changed");
    match (before_nat, nat_rules()) {
        (Some(before), Some(after)) => {
            assert!(
                !after.contains("10.213.2."),
                "a rule mentions the pod CIDR:\n{after}"
            );
            let masq = |rules: &str| rules.lines().filter(|l| l.contains("MASQUERADE")).count();
            assert_eq!(
                masq(&after),
                masq(&before),
                "a MASQUERADE rule appeared:\n{after}"
            );
        }
        _ => eprintln!("iptables unavailable: skipping the NAT assertion"),
    }
    net.detach("kjt2-a", &ns).await.unwrap();
}

#[tokio::test]
async fn detach_releases_the_address_for_the_next_pod() {
    if !can_run("detach_releases_the_address") {
        return;
    }
    let mut f = Fixture::new(3);
    let (ns_a, ns_b) = (f.netns("a"), f.netns("b"));
    let net = f.network();
    // A /30 holds the gateway and exactly one pod.
    net.set_pod_cidr("10.213.3.0/30").await.unwrap();

    let a = net.attach("kjt3-a", &pod("a"), &ns_a).await.unwrap();
    assert_eq!(a.to_string(), "10.213.3.2");
    let full = net.attach("kjt3-b", &pod("b"), &ns_b).await.unwrap_err();
    assert!(
        full.to_string().contains("no IP addresses available"),
        "{full}"
    );

    net.detach("kjt3-a", &ns_a).await.unwrap();
    let b = net.attach("kjt3-b", &pod("b"), &ns_b).await.unwrap();
    assert_eq!(b, a);
    net.detach("kjt3-b", &ns_b).await.unwrap();
}

#[tokio::test]
async fn attaching_the_same_sandbox_again_returns_the_same_address() {
    if !can_run("attaching_the_same_sandbox_again") {
        return;
    }
    let mut f = Fixture::new(4);
    let ns = f.netns("a");
    let net = f.network();
    // With room for one pod, a second ADD would fail: the repeat must not ADD.
    net.set_pod_cidr("10.213.4.0/30").await.unwrap();
    let first = net.attach("kjt4-a", &pod("a"), &ns).await.unwrap();
    let again = net.attach("kjt4-a", &pod("a"), &ns).await.unwrap();
    assert_eq!(first, again);

    // A restarted agent finds the attachment in the state dir.
    let restarted = f.network();
    restarted.set_pod_cidr("10.213.4.0/30").await.unwrap();
    assert_eq!(
        restarted.attach("kjt4-a", &pod("a"), &ns).await.unwrap(),
        first
    );
    restarted.detach("kjt4-a", &ns).await.unwrap();
}

#[tokio::test]
async fn a_pod_whose_interface_vanished_is_attached_again() {
    if !can_run("a_pod_whose_interface_vanished") {
        return;
    }
    let mut f = Fixture::new(5);
    let ns = f.netns("a");
    let net = f.network();
    net.set_pod_cidr(&f.cidr()).await.unwrap();
    net.attach("kjt5-a", &pod("a"), &ns).await.unwrap();
    let deleted = Command::new("ip")
        .args([
            "netns",
            "exec",
            &f.ns_name("a"),
            "ip",
            "link",
            "del",
            "eth0",
        ])
        .status()
        .unwrap();
    assert!(deleted.success());

    // CHECK fails, so the pod is torn down and attached anew.
    let ip = v4(net.attach("kjt5-a", &pod("a"), &ns).await.unwrap());
    f.serve_http("a");
    assert_eq!(http_get_from_host(ip), "HTTP/1.0 200 OK");
    net.detach("kjt5-a", &ns).await.unwrap();
}

#[tokio::test]
async fn detach_is_idempotent_and_tolerates_a_deleted_namespace() {
    if !can_run("detach_is_idempotent") {
        return;
    }
    let mut f = Fixture::new(6);
    let ns = f.netns("a");
    let net = f.network();
    net.set_pod_cidr(&f.cidr()).await.unwrap();
    net.detach("kjt6-never", Path::new("/run/netns/kjt6-never"))
        .await
        .unwrap();

    net.attach("kjt6-a", &pod("a"), &ns).await.unwrap();
    netns::delete(&f.ns_name("a")).unwrap();
    net.detach("kjt6-a", &ns).await.unwrap();
    net.detach("kjt6-a", &ns).await.unwrap();
    let leases = f.state.path().join("cni/ipam/kaji");
    let leased: Vec<_> = std::fs::read_dir(&leases)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(leased.is_empty(), "leases left: {leased:?}");
}

#[tokio::test]
async fn changing_the_pod_cidr_is_refused_while_a_pod_is_attached() {
    if !can_run("changing_the_pod_cidr_is_refused") {
        return;
    }
    let mut f = Fixture::new(7);
    let ns = f.netns("a");
    let net = f.network();
    net.set_pod_cidr(&f.cidr()).await.unwrap();
    net.set_pod_cidr(&f.cidr()).await.unwrap();
    net.attach("kjt7-a", &pod("a"), &ns).await.unwrap();

    let err = net.set_cidr("10.213.8.0/24").await.unwrap_err();
    assert!(
        matches!(err, CniError::CidrInUse { attached: 1, .. }),
        "{err:?}"
    );
    assert_eq!(net.pod_cidr().unwrap().to_string(), f.cidr());

    net.detach("kjt7-a", &ns).await.unwrap();
    net.set_cidr("10.213.9.0/24").await.unwrap();
    let ip = net.attach("kjt7-a", &pod("a"), &ns).await.unwrap();
    assert!(ip.to_string().starts_with("10.213.9."), "{ip}");
    let bridge = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &f.bridge])
        .output()
        .unwrap();
    let bridge = String::from_utf8_lossy(&bridge.stdout);
    assert!(
        bridge.contains("10.213.9.1/24") && !bridge.contains("10.213.7."),
        "{bridge}"
    );
    net.detach("kjt7-a", &ns).await.unwrap();
}

#[tokio::test]
async fn a_missing_plugin_directory_fails_attach_with_a_typed_error() {
    if !can_run("a_missing_plugin_directory") {
        return;
    }
    let mut f = Fixture::new(10);
    let ns = f.netns("a");
    let net = CniNetwork::new(CniConfig {
        bin_dir: f.state.path().join("no-plugins"),
        ..f.config()
    })
    .unwrap();
    net.set_pod_cidr(&f.cidr()).await.unwrap();
    let err = net.attach_v4("kjt10-a", &pod("a"), &ns).await.unwrap_err();
    assert!(
        matches!(&err, CniError::Plugin(kaji_cni::PluginError::NotFound { plugin, .. }) if plugin == "loopback"),
        "{err:?}"
    );
}
