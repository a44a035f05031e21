//! Runs the official Python client's tests (tests/python) against a real cluster.

mod common;

use common::Cluster;

#[test]
fn official_python_client_works_unchanged() {
    let c = Cluster::start();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python");
    let out = std::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", dir])
        .env("KUBECONFIG", c.kubeconfig())
        .output()
        .expect("python3 runs (install the client with `pip install kubernetes pytest`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pytest failed:\n{text}");
    assert!(text.contains("8 passed"), "{text}");
}
