//! The MarkdownView operator against a real `kaji up`: install the CRD, run
//! the operator in this process, apply a MarkdownView, and check what a user
//! would — the viewer serves the markdowns at its pod IPs, reconciling again
//! changes nothing, a deleted ConfigMap comes back, new markdowns are served,
//! `kubectl scale` works through the scale subresource, and deleting the view
//! garbage-collects everything it owns.
//!
//! Pods run as real processes with their own IPs only as root with the CNI
//! plugins installed (CI runs as root); otherwise the cluster runs simulated
//! pods and the HTTP checks are skipped, saying so.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use markdown_view::desired::{config_map_name, selector_string, viewer_name, VIEWER_PORT};
use markdown_view::{Context, MarkdownView};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every wait is bounded by this.
const LIMIT: Duration = Duration::from_secs(90);

/// The whole test is bounded by this.
const WHOLE: Duration = Duration::from_secs(600);

const SAMPLE: &str = include_str!("../sample.yaml");

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

/// The `kaji` binary `cargo test --workspace` builds next to this test's
/// directory (`target/<profile>/deps/e2e-…` → `target/<profile>/kaji`).
fn kaji_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("kaji"))
        .expect("the test runs from target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build -p kaji` \
         (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

/// A running `kaji up` on a temp data dir, killed (by its PID) when dropped.
struct Kaji {
    child: Option<Child>,
    kubeconfig: PathBuf,
    /// Whether pods are real processes with their own IPs.
    real_pods: bool,
    _dir: tempfile::TempDir,
}

impl Kaji {
    fn start() -> Kaji {
        // MARKDOWN_VIEW_E2E_RUNTIME=simulated forces simulated pods (to try
        // what a run without root does).
        let forced_simulated =
            std::env::var("MARKDOWN_VIEW_E2E_RUNTIME").is_ok_and(|r| r == "simulated");
        let real_pods = !forced_simulated && is_root() && Path::new("/usr/lib/cni/bridge").exists();
        let runtime: &[&str] = if real_pods {
            &[
                "--runtime",
                "process",
                "--cluster-cidr",
                "10.233.0.0/16",
                "--bridge",
                "kajit-mdview",
            ]
        } else {
            eprintln!(
                "NOTE: not root, no CNI plugins in /usr/lib/cni, or MARKDOWN_VIEW_E2E_RUNTIME=simulated: \
                 running simulated pods, skipping the HTTP checks of the viewer and not \
                 waiting for it to become available (simulated pods fail HTTP probes)"
            );
            &["--runtime", "simulated"]
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(kaji_bin())
            .args(["up", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--log", "warn"])
            .args(["--agent-listen", "127.0.0.1:0"])
            .args(runtime)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kaji up");
        let stdout = child.stdout.take().expect("stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // Reads the ready line, then keeps draining so kaji never blocks on
        // a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("kaji is ready at ") {
                    let _ = ready_tx.send(line);
                }
            }
        });
        let kaji = Kaji {
            child: Some(child),
            kubeconfig: dir.path().join("kubeconfig"),
            real_pods,
            _dir: dir,
        };
        let line = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("kaji up did not report ready within 30 s");
        eprintln!("{line}");
        kaji
    }

    async fn client(&self) -> Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig parses");
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kubeconfig loads");
        Client::try_from(config).expect("client builds")
    }

    /// Runs kubectl against this cluster: (success, stdout, stderr).
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout", "30s"])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl (set KUBECTL if it is not on PATH)");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes())
                .expect("write kubectl stdin");
        }
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl and asserts it succeeded; returns stdout.
    #[track_caller]
    fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, stdout, stderr) = self.kubectl(args, stdin);
        assert!(
            ok,
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// What the cluster holds, for a failure message.
    fn dump(&self) -> String {
        let (_, out, err) = self.kubectl(
            &[
                "get",
                "markdownviews,deployments,replicasets,pods,configmaps,services",
                "-o",
                "wide",
            ],
            None,
        );
        let (_, pods, pods_err) = self.kubectl(
            &[
                "describe",
                "pods",
                "-l",
                "app.kubernetes.io/name=markdown-view",
            ],
            None,
        );
        let (_, logs, logs_err) = self.kubectl(
            &[
                "logs",
                "-l",
                "app.kubernetes.io/name=markdown-view",
                "--tail=20",
            ],
            None,
        );
        format!("{out}{err}\n{pods}{pods_err}\nviewer logs:\n{logs}{logs_err}")
    }

    /// Polls `probe` every 200 ms until it yields `Ok(Some(_))`, for at most
    /// [`LIMIT`]; on timeout panics with the last error and the cluster's
    /// state.
    async fn eventually<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, String>>,
    {
        let deadline = Instant::now() + LIMIT;
        let mut last = String::from("(no answer yet)");
        loop {
            match tokio::time::timeout(Duration::from_secs(15), probe()).await {
                Ok(Ok(Some(value))) => return value,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => last = e,
                Err(_) => last = "the probe took over 15 s".into(),
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {LIMIT:?} waiting for {what}\nlast: {last}\ncluster:\n{}",
                    self.dump()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Kaji {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM for a clean shutdown (it stops the pods' processes),
            // SIGKILL if it takes too long.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.0 GET with short timeouts; returns the whole response.
async fn http_get(ip: &str, port: i32, path: &str) -> Result<String, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(format!("{ip}:{port}"))
            .await
            .map_err(|e| format!("connect {ip}:{port}: {e}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("GET http://{ip}:{port}{path} timed out"))?
}

/// The IPs of the running viewer pods of the view named `name`.
async fn viewer_ips(pods: &Api<Pod>, name: &str) -> Result<Vec<String>, String> {
    let list = pods
        .list(&ListParams::default().labels(&selector_string(name)))
        .await
        .map_err(|e| format!("listing pods: {e}"))?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref())
        .filter(|s| s.phase.as_deref() == Some("Running"))
        .filter_map(|s| s.pod_ip.clone())
        .collect())
}

/// Waits until some viewer pod serves `path` with a body containing every
/// one of `needles`.
async fn served(kaji: &Kaji, pods: &Api<Pod>, name: &str, path: &str, needles: &[&str]) -> String {
    kaji.eventually(
        &format!("a viewer pod serving {path} with {needles:?}"),
        || async {
            let ips = viewer_ips(pods, name).await?;
            if ips.is_empty() {
                return Err("no running viewer pod with an IP".into());
            }
            let mut last = String::new();
            for ip in ips {
                match http_get(&ip, VIEWER_PORT, path).await {
                    Ok(r)
                        if r.starts_with("HTTP/1.0 200")
                            && needles.iter().all(|n| r.contains(n)) =>
                    {
                        return Ok(Some(r));
                    }
                    Ok(r) => last = format!("{ip}: {r}"),
                    Err(e) => last = e,
                }
            }
            Err(last)
        },
    )
    .await
}

/// The resourceVersions of the view and everything it owns.
async fn versions(client: &Client, name: &str) -> Vec<(String, String)> {
    let get = |kind: &str, rv: Option<String>| (kind.to_string(), rv.unwrap_or_default());
    let mv = Api::<MarkdownView>::default_namespaced(client.clone())
        .get(name)
        .await
        .expect("get view");
    let cm = Api::<ConfigMap>::default_namespaced(client.clone())
        .get(&config_map_name(name))
        .await
        .expect("get configmap");
    let deploy = Api::<Deployment>::default_namespaced(client.clone())
        .get(&viewer_name(name))
        .await
        .expect("get deployment");
    let svc = Api::<Service>::default_namespaced(client.clone())
        .get(&viewer_name(name))
        .await
        .expect("get service");
    vec![
        get("MarkdownView", mv.resource_version()),
        get("ConfigMap", cm.resource_version()),
        get("Deployment", deploy.resource_version()),
        get("Service", svc.resource_version()),
    ]
}

/// Whether `mv`'s status says `replicas` viewers are available.
///
/// Simulated pods never pass the viewer's HTTP readiness probe: kaji's
/// simulated runtime sends probes to the made-up pod IPs, where nothing
/// listens. There it is enough that the operator wrote a status for the
/// current generation.
fn reports_available(kaji: &Kaji, mv: &MarkdownView, replicas: i32) -> bool {
    if kaji.real_pods {
        return available(mv, replicas);
    }
    mv.status.as_ref().is_some_and(|s| {
        s.observed_generation == mv.metadata.generation && !s.conditions.is_empty()
    })
}

fn available(mv: &MarkdownView, replicas: i32) -> bool {
    mv.status.as_ref().is_some_and(|s| {
        s.available_replicas == replicas
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Available" && c.status == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_markdown_view_operator_serves_heals_updates_scales_and_cleans_up() {
    // The operator's log (RUST_LOG overrides), interleaved with kaji's stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "markdown_view=debug,kube_runtime=info".into()),
        )
        .with_test_writer()
        .try_init();
    let kaji = Kaji::start();
    tokio::time::timeout(WHOLE, scenario(&kaji))
        .await
        .unwrap_or_else(|_| panic!("the scenario took over {WHOLE:?}\n{}", kaji.dump()));
}

async fn scenario(kaji: &Kaji) {
    let client = kaji.client().await;

    // Install the CRD exactly as the README does, and wait until it is served.
    let crd = markdown_view::crd_yaml().expect("crd yaml");
    kaji.kubectl_ok(&["apply", "-f", "-"], Some(&crd));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    kaji.eventually("the CRD to be Established", || async {
        let crd = crds
            .get("markdownviews.view.kaji.dev")
            .await
            .map_err(|e| format!("GET the CRD: {e}"))?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
        {
            Ok(Some(()))
        } else {
            Err(format!("status.conditions: {conditions:?}"))
        }
    })
    .await;
    let views: Api<MarkdownView> = Api::default_namespaced(client.clone());
    kaji.eventually("markdownviews to be listable", || async {
        views
            .list(&ListParams::default())
            .await
            .map(|_| Some(()))
            .map_err(|e| format!("LIST markdownviews: {e}"))
    })
    .await;

    // The operator, in this process.
    let operator = tokio::spawn(markdown_view::run(client.clone()));

    kaji.kubectl_ok(&["apply", "-f", "-"], Some(SAMPLE));
    let mv = kaji
        .eventually("the view to report its viewer available", || async {
            let mv = views.get("docs").await.map_err(|e| e.to_string())?;
            Ok(reports_available(kaji, &mv, 1).then_some(mv))
        })
        .await;
    // The CRD's schema defaults filled what the sample leaves out.
    assert_eq!(mv.spec.replicas, 1, "replicas defaulted");
    assert_eq!(
        mv.spec.viewer_image,
        markdown_view::resource::DEFAULT_VIEWER_IMAGE
    );
    let uid = mv.uid().expect("uid");

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let cm = cms
        .get("docs-markdowns")
        .await
        .expect("the ConfigMap exists");
    let deploy = deployments
        .get("docs-viewer")
        .await
        .expect("the Deployment exists");
    let svc = services
        .get("docs-viewer")
        .await
        .expect("the Service exists");
    for (kind, owners) in [
        ("ConfigMap", cm.owner_references()),
        ("Deployment", deploy.owner_references()),
        ("Service", svc.owner_references()),
    ] {
        assert!(
            owners
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true) && o.kind == "MarkdownView"),
            "{kind} is controlled by the view: {owners:?}"
        );
    }
    assert!(cm.data.unwrap_or_default().contains_key("faq.md"));
    assert!(
        cm.metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .any(|m| m.manager.as_deref() == Some("markdown-view")
                && m.operation.as_deref() == Some("Apply")),
        "the operator's field manager owns the ConfigMap's fields"
    );

    // kubectl prints the columns the CRD declares.
    let table = kaji.kubectl_ok(&["get", "markdownviews"], None);
    eprintln!("$ kubectl get markdownviews\n{table}");
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "REPLICAS", "AVAILABLE", "READY", "AGE"] {
        assert!(header.contains(column), "{column} in {table}");
    }
    assert!(table.contains("docs"), "{table}");
    let short = kaji.kubectl_ok(&["get", "mdv", "docs", "-o", "name"], None);
    assert_eq!(short.trim(), "markdownview.view.kaji.dev/docs");

    if kaji.real_pods {
        let page = served(
            kaji,
            &pods,
            "docs",
            "/index.md",
            &["<h1>MarkdownView</h1>", "<strong>markdown-view</strong>"],
        )
        .await;
        eprintln!("GET /index.md from a viewer pod:\n{page}");
        served(kaji, &pods, "docs", "/", &["href=\"/faq.md\""]).await;
    }

    // Idempotence: once things settle, reconciling again (twice, directly)
    // and letting the controller run on changes no resourceVersion.
    let settled = kaji
        .eventually("the resourceVersions to settle", || async {
            let before = versions(&client, "docs").await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = versions(&client, "docs").await;
            if before == after {
                Ok(Some(after))
            } else {
                Err(format!("still changing: {before:?} → {after:?}"))
            }
        })
        .await;
    let ctx = Context::new(client.clone());
    for _ in 0..2 {
        let mv = views.get("docs").await.expect("get view");
        markdown_view::reconcile(Arc::new(mv), ctx.clone())
            .await
            .expect("a direct reconcile succeeds");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        versions(&client, "docs").await,
        settled,
        "reconciling an up-to-date view must change nothing"
    );

    // The schema's bounds hold: 9 replicas is refused.
    let refused = views
        .patch(
            "docs",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 9}})),
        )
        .await;
    match refused {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{status:?}"),
        other => panic!("replicas 9 must be refused with 422: {other:?}"),
    }

    // A ConfigMap deleted by hand comes back.
    let old_uid = cms.get("docs-markdowns").await.expect("cm").uid();
    cms.delete("docs-markdowns", &DeleteParams::default())
        .await
        .expect("delete the ConfigMap");
    kaji.eventually("the ConfigMap to be recreated", || async {
        match cms.get_opt("docs-markdowns").await {
            Ok(Some(cm)) if cm.uid() != old_uid => Ok(Some(())),
            Ok(_) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;

    // New markdowns reach the ConfigMap and the viewers.
    views
        .patch(
            "docs",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": {"markdowns": {"index.md": "# Updated\n\nNew *text* here.\n"}}
            })),
        )
        .await
        .expect("update the markdowns");
    kaji.eventually("the ConfigMap to hold the new markdown", || async {
        let cm = cms.get("docs-markdowns").await.map_err(|e| e.to_string())?;
        let data = cm.data.unwrap_or_default();
        Ok(data
            .get("index.md")
            .is_some_and(|t| t.starts_with("# Updated"))
            .then_some(()))
    })
    .await;
    if kaji.real_pods {
        served(
            kaji,
            &pods,
            "docs",
            "/index.md",
            &["<h1>Updated</h1>", "<em>text</em>"],
        )
        .await;
    }

    // kubectl scale goes through the scale subresource to the Deployment.
    kaji.kubectl_ok(&["scale", "markdownview", "docs", "--replicas=2"], None);
    let scale = kaji.kubectl_ok(
        &[
            "get",
            "--raw",
            "/apis/view.kaji.dev/v1/namespaces/default/markdownviews/docs/scale",
        ],
        None,
    );
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("a Scale");
    assert_eq!(scale["kind"], "Scale", "{scale}");
    assert_eq!(scale["spec"]["replicas"], 2, "{scale}");
    kaji.eventually("two viewers available", || async {
        let mv = views.get("docs").await.map_err(|e| e.to_string())?;
        let deploy = deployments
            .get("docs-viewer")
            .await
            .map_err(|e| e.to_string())?;
        let wanted = deploy.spec.and_then(|s| s.replicas);
        Ok((wanted == Some(2) && reports_available(kaji, &mv, 2)).then_some(()))
    })
    .await;

    // Deleting the view garbage-collects what it owns.
    views
        .delete("docs", &DeleteParams::default())
        .await
        .expect("delete the view");
    kaji.eventually("the owned objects to be garbage-collected", || async {
        let cm = cms
            .get_opt("docs-markdowns")
            .await
            .map_err(|e| e.to_string())?;
        let deploy = deployments
            .get_opt("docs-viewer")
            .await
            .map_err(|e| e.to_string())?;
        let svc = services
            .get_opt("docs-viewer")
            .await
            .map_err(|e| e.to_string())?;
        let left: Vec<&str> = [
            cm.map(|_| "ConfigMap"),
            deploy.map(|_| "Deployment"),
            svc.map(|_| "Service"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if left.is_empty() {
            Ok(Some(()))
        } else {
            Err(format!("still there: {left:?}"))
        }
    })
    .await;
    kaji.eventually("the viewer pods to be gone", || async {
        let list = pods
            .list(&ListParams::default().labels(&selector_string("docs")))
            .await
            .map_err(|e| e.to_string())?;
        Ok(list.items.is_empty().then_some(()))
    })
    .await;

    operator.abort();
    let _ = operator.await;
}
