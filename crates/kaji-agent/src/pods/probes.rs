//! Readiness, liveness and startup probes, one task per probe of each
//! running container, as kubelet's prober workers: wait
//! `initialDelaySeconds`, probe every `periodSeconds` within
//! `timeoutSeconds`, and flip the verdict after `successThreshold`
//! successes or `failureThreshold` failures in a row, waking the pod's
//! worker when it flips. Liveness and readiness wait for the startup probe.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kaji_controllers::events::EventType;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::status::ProbeView;
use crate::context::{container_field_path, NodeContext};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Readiness,
    Liveness,
    Startup,
}

impl Kind {
    fn title(self) -> &'static str {
        match self {
            Kind::Readiness => "Readiness",
            Kind::Liveness => "Liveness",
            Kind::Startup => "Startup",
        }
    }
}

/// Verdicts for one container instance.
#[derive(Debug, Clone, Copy, Default)]
struct Verdicts {
    ready: Option<bool>,
    started: Option<bool>,
    /// Liveness or startup failed: the container must be restarted.
    failed: Option<Kind>,
}

/// Abort the task when dropped.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The probes of one pod's running containers.
pub struct Prober {
    verdicts: Arc<Mutex<HashMap<String, Verdicts>>>,
    tasks: HashMap<String, Vec<Task>>,
    wake: Arc<Notify>,
}

/// Where probes connect: the pod's IP, or loopback on the host network.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host to connect to when a probe names none.
    pub host: IpAddr,
}

impl Prober {
    /// A prober waking the pod worker through `wake`.
    pub fn new(wake: Arc<Notify>) -> Self {
        Prober {
            verdicts: Arc::new(Mutex::new(HashMap::new())),
            tasks: HashMap::new(),
            wake,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verdicts>> {
        self.verdicts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the probes say about container instance `id`.
    pub fn view(&self, id: &str) -> ProbeView {
        let v = self.lock().get(id).copied().unwrap_or_default();
        ProbeView {
            ready: v.ready,
            started: v.started,
        }
    }

    /// Whether liveness or startup failed for `id`; returns which.
    pub fn failed(&self, id: &str) -> Option<&'static str> {
        self.lock().get(id).and_then(|v| v.failed).map(|k| match k {
            Kind::Startup => "startup",
            _ => "liveness",
        })
    }

    /// Whether the probes of instance `id` are running.
    pub fn probing(&self, id: &str) -> bool {
        self.tasks.contains_key(id)
    }

    /// Starts the probes of a running container instance, once.
    pub fn ensure(
        &mut self,
        ctx: &Arc<NodeContext>,
        pod: &Arc<Pod>,
        container: &Container,
        id: &str,
        target: &Target,
    ) {
        if self.tasks.contains_key(id) {
            return;
        }
        let probes = [
            (Kind::Startup, container.startup_probe.clone()),
            (Kind::Liveness, container.liveness_probe.clone()),
            (Kind::Readiness, container.readiness_probe.clone()),
        ];
        self.lock().insert(
            id.to_string(),
            Verdicts {
                ready: container.readiness_probe.as_ref().map(|_| false),
                started: container.startup_probe.as_ref().map(|_| false),
                failed: None,
            },
        );
        let mut tasks = Vec::new();
        for (kind, probe) in probes {
            let Some(probe) = probe else { continue };
            let worker = ProbeWorker {
                kind,
                probe,
                ctx: ctx.clone(),
                pod: pod.clone(),
                container: container.clone(),
                id: id.to_string(),
                target: target.clone(),
                verdicts: self.verdicts.clone(),
                wake: self.wake.clone(),
            };
            tasks.push(Task(tokio::spawn(worker.run())));
        }
        self.tasks.insert(id.to_string(), tasks);
    }

    /// Stops probing every instance not in `live`.
    pub fn retain(&mut self, live: &[&str]) {
        self.tasks.retain(|id, _| live.contains(&id.as_str()));
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        verdicts.retain(|id, _| live.contains(&id.as_str()));
    }
}

struct ProbeWorker {
    kind: Kind,
    probe: Probe,
    ctx: Arc<NodeContext>,
    pod: Arc<Pod>,
    container: Container,
    id: String,
    target: Target,
    verdicts: Arc<Mutex<HashMap<String, Verdicts>>>,
    wake: Arc<Notify>,
}

fn seconds(v: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(min)).unwrap_or(0))
}

impl ProbeWorker {
    fn verdicts(&self) -> Verdicts {
        let map = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&self.id).copied().unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Verdicts)) {
        let mut map = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = map.get_mut(&self.id) {
            f(v);
        }
        drop(map);
        self.wake.notify_one();
    }

    async fn run(self) {
        let p = &self.probe;
        let period = seconds(p.period_seconds, 10, 1);
        let timeout = seconds(p.timeout_seconds, 1, 1);
        let success_threshold = u32::try_from(p.success_threshold.unwrap_or(1).max(1)).unwrap_or(1);
        let failure_threshold = u32::try_from(p.failure_threshold.unwrap_or(3).max(1)).unwrap_or(3);
        tokio::time::sleep(seconds(p.initial_delay_seconds, 0, 0)).await;
        let (mut successes, mut failures) = (0u32, 0u32);
        let mut verdict: Option<bool> = None;
        loop {
            let started = self.verdicts().started.unwrap_or(true);
            let skip = match self.kind {
                Kind::Startup => started,
                _ => !started,
            };
            if self.kind == Kind::Startup && started {
                return;
            }
            if !skip {
                let (ok, output) = self.probe_once(timeout).await;
                if ok {
                    successes += 1;
                    failures = 0;
                } else {
                    failures += 1;
                    successes = 0;
                    self.ctx.event(
                        &self.pod,
                        Some(container_field_path(&self.pod, &self.container.name)),
                        EventType::Warning,
                        "Unhealthy",
                        format!("{} probe failed: {}", self.kind.title(), output.trim_end()),
                    );
                }
                let flip = if ok && successes >= success_threshold && verdict != Some(true) {
                    Some(true)
                } else if !ok && failures >= failure_threshold && verdict != Some(false) {
                    Some(false)
                } else {
                    None
                };
                if let Some(v) = flip {
                    verdict = Some(v);
                    let kind = self.kind;
                    self.update(|s| match kind {
                        Kind::Readiness => s.ready = Some(v),
                        Kind::Startup if v => s.started = Some(true),
                        Kind::Startup | Kind::Liveness if !v => s.failed = Some(kind),
                        _ => {}
                    });
                    // A failed liveness or startup probe ends with a restart,
                    // and a new instance gets new probes.
                    if !v && kind != Kind::Readiness {
                        return;
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    /// Runs the probe once: success, and what to say on failure.
    async fn probe_once(&self, timeout: Duration) -> (bool, String) {
        let p = &self.probe;
        if let Some(exec) = &p.exec {
            let cmd = exec.command.clone().unwrap_or_default();
            return match self.ctx.runtime.exec_sync(&self.id, &cmd, timeout).await {
                Ok(out) if out.exit_code == 0 => (true, String::new()),
                Ok(out) => {
                    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&out.stderr));
                    if text.trim().is_empty() {
                        text = format!("command {cmd:?} exited with {}", out.exit_code);
                    }
                    (false, text)
                }
                Err(e) => (false, e.to_string()),
            };
        }
        let explicit_host = p
            .tcp_socket
            .as_ref()
            .and_then(|t| t.host.as_deref())
            .or_else(|| p.http_get.as_ref().and_then(|g| g.host.as_deref()))
            .is_some_and(|h| !h.is_empty());
        if (p.tcp_socket.is_some() || p.http_get.is_some())
            && !explicit_host
            && !self.target.host.is_loopback()
            && self.ctx.runtime.addresses_are_simulated()
        {
            // Nothing can answer at a made-up pod address.
            return (true, String::new());
        }
        if let Some(tcp) = &p.tcp_socket {
            let host = self.host(tcp.host.as_deref());
            let Some(port) = self.port(&tcp.port) else {
                return (false, format!("unknown port {:?}", tcp.port));
            };
            let addr = authority(&host, port);
            return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await
            {
                Ok(Ok(_)) => (true, String::new()),
                Ok(Err(e)) => (false, format!("dial tcp {addr}: {e}")),
                Err(_) => (false, format!("dial tcp {addr}: i/o timeout")),
            };
        }
        if let Some(get) = &p.http_get {
            let host = self.host(get.host.as_deref());
            let Some(port) = self.port(&get.port) else {
                return (false, format!("unknown port {:?}", get.port));
            };
            let path = get
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or("/".into());
            let https = get.scheme.as_deref() == Some("HTTPS");
            let headers: Vec<(String, String)> = get
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            let url = format!(
                "{}://{}{path}",
                if https { "https" } else { "http" },
                authority(&host, port)
            );
            return match tokio::time::timeout(timeout, http_get(&host, port, &path, https, &headers))
                .await
            {
                Ok(Ok(code)) if (200..400).contains(&code) => (true, String::new()),
                Ok(Ok(code)) => (false, format!("HTTP probe failed with statuscode: {code}")),
                Ok(Err(e)) => (false, format!("Get \"{url}\": {e}")),
                Err(_) => (
                    false,
                    format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"),
                ),
            };
        }
        // gRPC probes are not implemented; never fail a container for it.
        (true, String::new())
    }

    fn host(&self, explicit: Option<&str>) -> String {
        explicit
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| self.target.host.to_string())
    }

    /// A probe's port: a number, or the name of one of the container's ports.
    fn port(&self, port: &IntOrString) -> Option<u16> {
        match port {
            IntOrString::Int(n) => u16::try_from(*n).ok(),
            IntOrString::String(s) => s.parse().ok().or_else(|| {
                self.container
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(s))
                    .and_then(|p| u16::try_from(p.container_port).ok())
            }),
        }
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One HTTP GET; the response status. HTTPS certificates are not verified,
/// as kubelet does not verify them for probes.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    https: bool,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let addr = authority(host, port);
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    let mut req = http::Request::get(path)
        .header(http::header::HOST, addr.as_str())
        .header(http::header::USER_AGENT, "kube-probe/1.32")
        .header(http::header::ACCEPT, "*/*");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = if https {
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(kaji_pki::insecure_client_config())
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        send(TokioIo::new(tls), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    Ok(response)
}

async fn send<T>(io: T, req: http::Request<Empty<bytes::Bytes>>) -> Result<u16, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let result = sender
        .send_request(req)
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string());
    conn.abort();
    result
}
