//! Malformed input against a real `kaji up` (issue 7, "Bad input"): the raw
//! HTTP corpus and a bounded schemathesis run (tests/malformed, pytest). Every
//! error must be a `Status` with the right code, nothing half-written, and the
//! server still healthy afterwards. `scripts/schemathesis.sh` is the long run.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Cluster;

/// Runs pytest on `files` (relative to tests/malformed) against `c`, with
/// extra environment, and returns its combined output; panics if it failed.
fn pytest(c: &Cluster, files: &[&str], env: &[(&str, &str)]) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/malformed");
    let pki = c.data_dir.join("pki");
    // `timeout` bounds the whole run even if a request were to hang (each
    // one also has its own deadline in the Python code).
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "900", "python3", "-m", "pytest", "-q", "-s"])
        .args(["-p", "no:cacheprovider", "-rfE"])
        .args(files)
        .current_dir(dir)
        .env("KAJI_URL", &c.url)
        .env("KAJI_CA", pki.join("ca.crt"))
        .env("KAJI_CERT", pki.join("admin.crt"))
        .env("KAJI_KEY", pki.join("admin.key"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .expect("python3 runs (install with `pip install pytest schemathesis`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pytest failed:\n{text}");
    text
}

#[test]
fn raw_malformed_http_corpus_gets_status_errors_and_server_stays_healthy() {
    let c = Cluster::start_with(&["--runtime", "none"]);
    let text = pytest(&c, &["test_raw_corpus.py"], &[]);
    assert!(text.contains(" passed"), "{text}");
}

#[test]
fn schemathesis_on_kajis_openapi_finds_no_server_errors() {
    let c = Cluster::start_with(&["--runtime", "none"]);
    let started = Instant::now();
    // The short run: core/v1 configmaps, pods and namespaces, apps/v1
    // deployments and CRDs, a few examples per operation and mode.
    let text = pytest(
        &c,
        &["test_schemathesis.py"],
        &[
            ("KAJI_ST_MAX_EXAMPLES", "3"),
            ("KAJI_ST_PHASES", "examples,fuzzing"),
        ],
    );
    assert!(text.contains(" passed"), "{text}");
    eprintln!(
        "schemathesis short run: {:?}\n{}",
        started.elapsed(),
        text.lines()
            .filter(|l| l.contains("answers by HTTP status") || l.contains("passed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        started.elapsed() < Duration::from_secs(600),
        "the short run must stay short"
    );
}
