//! kopf, the Python operator framework, runs a real operator
//! (tests/kopf/operator.py) against kaji unchanged: its watches, finalizer,
//! JSON and merge patches of the object and its status subresource, Events,
//! an owned ConfigMap the garbage collector removes after the owner, and
//! peering between two operators.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, Cluster};

fn kopf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kopf")
}

/// `python3 -m kopf run` as a child process, killed (by its PID) when
/// dropped; its log is printed if the test is failing.
struct Operator {
    child: Option<Child>,
    log: PathBuf,
}

impl Operator {
    /// Starts `kopf run` with `args` (besides `--namespace default`), its
    /// log in the cluster's temp dir as `<name>.log`.
    fn start(c: &Cluster, name: &str, args: &[&str]) -> Operator {
        let log = c.data_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("kopf log file");
        let child = Command::new("python3")
            .args(["-m", "kopf", "run", "--namespace", "default", "--verbose"])
            .args(args)
            .arg("operator.py")
            .current_dir(kopf_dir())
            .env("KUBECONFIG", c.kubeconfig())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("python3 runs (install kopf with `pip install kopf kubernetes`)");
        Operator {
            child: Some(child),
            log,
        }
    }

    /// Panics with the operator's log if it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("kopf exited ({status}):\n{log}");
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 60 s) until kopf has logged `needle`.
    fn wait_for_log(&mut self, needle: &str) {
        let log = self.log.clone();
        wait_for(self, &format!("kopf to log {needle:?}"), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains(needle).then_some(())
        });
    }

    /// Stops kopf gracefully with SIGTERM (by its PID) and waits for it.
    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kopf did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- {} (last 80 lines) ---\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// Polls `probe` every 200 ms until it yields `Some`, for at most 60 s,
/// checking that the operator is still alive.
fn wait_for<T>(op: &mut Operator, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        op.assert_running();
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const GREETING: &str = r#"
apiVersion: demo.kaji.dev/v1
kind: Greeting
metadata:
  name: hello
spec:
  message: Nice to meet you.
"#;

/// Applies a CRD file from tests/kopf and waits until it is served.
fn apply_crd(c: &Cluster, file: &str, name: &str) {
    c.kubectl(&["apply", "-f", kopf_dir().join(file).to_str().unwrap()])
        .success();
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        &format!("crd/{name}"),
    ])
    .success();
}

#[test]
fn a_kopf_operator_creates_updates_and_finalizes_its_custom_resources() {
    let started = Instant::now();
    let c = Cluster::start();
    apply_crd(&c, "crd.yaml", "greetings.demo.kaji.dev");
    let mut op = Operator::start(&c, "kopf", &["--standalone"]);

    // Create: kopf adds its finalizer, the create handler makes an adopted
    // ConfigMap, and the handler results land in status.
    c.kubectl_stdin(&["apply", "-f", "-"], Some(GREETING))
        .success();
    let uid = get(&c, &["greeting", "hello"], "{.metadata.uid}").expect("created");
    let owner = wait_for(&mut op, "the owned ConfigMap", || {
        get(
            &c,
            &["configmap", "hello-greeting"],
            "{.data.text}|{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].uid}/{.metadata.ownerReferences[0].controller}",
        )
    });
    assert_eq!(
        owner,
        format!("Hello, world! Nice to meet you.|Greeting/hello/{uid}/true")
    );
    let finalizers = get(&c, &["greeting", "hello"], "{.metadata.finalizers}").unwrap();
    assert_eq!(finalizers, r#"["kopf.zalando.org/KopfFinalizerMarker"]"#);
    let status = wait_for(&mut op, "the create handler's result in status", || {
        get(&c, &["greeting", "hello"], "{.status.create_fn.configMap}").filter(|s| !s.is_empty())
    });
    assert_eq!(status, "hello-greeting");
    wait_for(&mut op, "kopf's last-handled-configuration", || {
        get(
            &c,
            &["greeting", "hello"],
            "{.metadata.annotations.kopf\\.zalando\\.org/last-handled-configuration}",
        )
        .filter(|s| s.contains("Nice to meet you."))
    });
    let event = wait_for(&mut op, "the Greeted event", || {
        get(
            &c,
            &[
                "events",
                "--field-selector",
                "involvedObject.name=hello,reason=Greeted",
            ],
            "{.items[*].involvedObject.kind}|{.items[*].message}",
        )
        .filter(|s| !s.starts_with('|'))
    });
    assert_eq!(event, "Greeting|ConfigMap hello-greeting holds the text");

    // Update: the field handlers rewrite the ConfigMap; the update handler
    // writes status through kopf's patch.
    c.kubectl(&[
        "patch",
        "greeting",
        "hello",
        "--type=merge",
        "-p",
        r#"{"spec":{"message":"How are you?","audience":"kaji"}}"#,
    ])
    .success();
    wait_for(&mut op, "the ConfigMap to follow the new spec", || {
        get(&c, &["configmap", "hello-greeting"], "{.data.text}")
            .filter(|t| t == "Hello, kaji! How are you?")
    });
    let observed = wait_for(&mut op, "status.observedGeneration", || {
        get(
            &c,
            &["greeting", "hello"],
            "{.status.observedGeneration}|{.status.update_fn.generation}|{.status.text_fn/spec\\.message.text}",
        )
        .filter(|s| s.starts_with('2'))
    });
    assert_eq!(observed, "2|2|Hello, kaji! How are you?");

    // Delete: the finalizer holds the object until the delete handler has
    // left its marker; then the object is gone and its ConfigMap collected.
    c.kubectl(&["delete", "greeting", "hello", "--wait=false"])
        .success();
    let marker = wait_for(&mut op, "the delete handler's marker", || {
        get(&c, &["configmap", "hello-farewell"], "{.data.deleted}")
    });
    assert_eq!(marker, "hello");
    wait_for(&mut op, "the Greeting to be gone", || {
        get(&c, &["greeting", "hello"], "{.metadata.name}")
            .is_none()
            .then_some(())
    });
    wait_for(&mut op, "the owned ConfigMap to be collected", || {
        get(&c, &["configmap", "hello-greeting"], "{.metadata.name}")
            .is_none()
            .then_some(())
    });
    let log = op.log();
    assert!(
        log.contains("Deleted, really deleted, and we are notified."),
        "{log}"
    );
    op.assert_running();
    eprintln!("kopf scenario took {:?}", started.elapsed());
}

#[test]
fn kopf_peers_pause_for_a_higher_priority_operator_and_resume_after_it() {
    let started = Instant::now();
    let c = Cluster::start();
    apply_crd(&c, "crd.yaml", "greetings.demo.kaji.dev");
    apply_crd(&c, "peering.yaml", "kopfpeerings.kopf.dev");
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {name: default}\n"),
    )
    .success();

    // Two operators on one peering: the one with the lower priority pauses.
    let mut low = Operator::start(
        &c,
        "kopf-low",
        &["--peering", "default", "--priority", "10"],
    );
    wait_for(
        &mut low,
        "the first peer in the KopfPeering's status",
        || {
            get(&c, &["kopfpeering", "default"], "{.status}")
                .filter(|s| s.contains("\"priority\":10"))
        },
    );
    let mut high = Operator::start(
        &c,
        "kopf-high",
        &["--peering", "default", "--priority", "20"],
    );
    low.wait_for_log("Pausing operations in favour of");
    let peers = get(&c, &["kopfpeering", "default"], "{.status.*.priority}").unwrap();
    assert_eq!(sorted_words(&peers), "10 20");

    // Only the high-priority operator handles a new Greeting.
    c.kubectl_stdin(&["apply", "-f", "-"], Some(GREETING))
        .success();
    wait_for(&mut high, "the owned ConfigMap", || {
        get(&c, &["configmap", "hello-greeting"], "{.data.text}")
    });
    assert!(high.log().contains("Handler 'create_fn' succeeded."));
    assert!(!low.log().contains("Handler 'create_fn'"), "{}", low.log());

    // Stopped gracefully, it leaves the peering; the other resumes and
    // handles what comes next.
    high.terminate();
    wait_for(&mut low, "the high-priority peer to leave", || {
        get(&c, &["kopfpeering", "default"], "{.status.*.priority}").filter(|p| p == "10")
    });
    low.wait_for_log("Resuming operations");
    c.kubectl(&[
        "patch",
        "greeting",
        "hello",
        "--type=merge",
        "-p",
        r#"{"spec":{"message":"Still here."}}"#,
    ])
    .success();
    wait_for(
        &mut low,
        "the resumed operator to update the ConfigMap",
        || {
            get(&c, &["configmap", "hello-greeting"], "{.data.text}")
                .filter(|t| t == "Hello, world! Still here.")
        },
    );
    assert!(low
        .log()
        .contains("Handler 'text_fn/spec.message' succeeded."));
    low.assert_running();
    eprintln!("kopf peering scenario took {:?}", started.elapsed());
}

fn sorted_words(s: &str) -> String {
    let mut words: Vec<&str> = s.split_whitespace().collect();
    words.sort_unstable();
    words.join(" ")
}
