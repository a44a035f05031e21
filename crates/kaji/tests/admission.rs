//! End-to-end: admission webhooks registered with kubectl against a real
//! `kaji up`, served by an HTTPS webhook server this test runs.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Cluster, Process};

/// The webhook server: `/validate` refuses objects labelled `forbidden`
/// (code 403), `/mutate` adds the label `mutated-by: kaji-test`. It serves
/// with the certificate and key given as arguments and prints its port.
const WEBHOOK_SERVER: &str = r#"
import base64, json, ssl, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        request = review["request"]
        response = {"uid": request["uid"], "allowed": True}
        obj = request.get("object") or {}
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if self.path.startswith("/validate") and "forbidden" in labels:
            response["allowed"] = False
            response["status"] = {"code": 403, "message": "the forbidden label is not allowed"}
        elif self.path.startswith("/mutate"):
            patch = [{"op": "add", "path": "/metadata/labels/mutated-by", "value": "kaji-test"}]
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
            response["warnings"] = ["mutated by the kaji test webhook"]
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Starts the webhook server with the cluster's own serving certificate
/// (valid for 127.0.0.1), returning it and its port.
fn webhook_server(cluster: &Cluster) -> (Process, u16) {
    let pki = cluster.data_dir.join("pki");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(WEBHOOK_SERVER)
        .arg(pki.join("apiserver.crt"))
        .arg(pki.join("apiserver.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn python3 webhook server");
    let stdout = child.stdout.take().unwrap();
    let process = Process(Some(child));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = line
        .trim()
        .parse()
        .expect("the webhook server prints its port");
    (process, port)
}

/// A configuration of `kind` with one webhook for ConfigMaps and CronTabs
/// carrying the label `admission-test`.
fn configuration(kind: &str, name: &str, url: &str, ca_bundle: &str) -> String {
    format!(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: {kind}
metadata:
  name: {name}
webhooks:
- name: {name}
  clientConfig:
    url: {url}
    caBundle: {ca_bundle}
  rules:
  - operations: ["CREATE", "UPDATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["configmaps"]
  - operations: ["CREATE", "UPDATE"]
    apiGroups: ["stable.example.com"]
    apiVersions: ["*"]
    resources: ["crontabs"]
  objectSelector:
    matchExpressions:
    - key: admission-test
      operator: Exists
  sideEffects: None
  admissionReviewVersions: ["v1"]
  timeoutSeconds: 5
"#
    )
}

const CRONTAB_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

fn configmap(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {labels}\ndata:\n  k: v\n"
    )
}

fn crontab(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\n  labels: {labels}\nspec:\n  cronSpec: '* * * * */5'\n"
    )
}

/// Retries `create -f -` until the webhooks are in effect (the API server
/// picks configurations up through a watch) and `done` holds.
fn until(
    cluster: &Cluster,
    manifest: &str,
    done: impl Fn(&common::Output) -> bool,
) -> common::Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cluster.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], Some(manifest));
        if done(&out) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kubectl_writes_pass_through_validating_and_mutating_webhooks() {
    let cluster = Cluster::start();
    let (_server, port) = webhook_server(&cluster);
    let ca = std::fs::read(cluster.data_dir.join("pki/ca.crt")).unwrap();
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    let base = format!("https://127.0.0.1:{port}");

    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(CRONTAB_CRD))
        .success();
    cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/crontabs.stable.example.com",
            "--timeout=30s",
        ])
        .success();
    let validating = configuration(
        "ValidatingWebhookConfiguration",
        "deny.kaji.test",
        &format!("{base}/validate"),
        &ca_bundle,
    );
    let mutating = configuration(
        "MutatingWebhookConfiguration",
        "label.kaji.test",
        &format!("{base}/mutate"),
        &ca_bundle,
    );
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(&validating))
        .success();
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(&mutating))
        .success();
    let listed = cluster.kubectl(&["get", "validatingwebhookconfigurations", "-o", "name"]);
    assert!(
        listed.success().contains("deny.kaji.test"),
        "{}",
        listed.stdout
    );

    // Denied, with the webhook's message, for a ConfigMap and a CronTab.
    let denied = "admission webhook \"deny.kaji.test\" denied the request: the forbidden label is not allowed";
    let bad = configmap("bad", "{admission-test: 'yes', forbidden: 'yes'}");
    let out = until(&cluster, &bad, |o| !o.ok);
    assert!(out.failure().contains(denied), "{}", out.stderr);
    let out = cluster.kubectl_stdin(&["create", "-f", "-"], Some(&bad));
    assert!(out.failure().contains(denied), "{}", out.stderr);
    assert!(!cluster.kubectl(&["get", "configmap", "bad"]).ok);
    let bad_crontab = crontab("bad", "{admission-test: 'yes', forbidden: 'yes'}");
    let out = cluster.kubectl_stdin(&["create", "-f", "-"], Some(&bad_crontab));
    assert!(out.failure().contains(denied), "{}", out.stderr);

    // Created, carrying the mutation and the webhook's warning.
    let out = cluster.kubectl_stdin(
        &["create", "-f", "-"],
        Some(&configmap("good", "{admission-test: 'yes'}")),
    );
    out.success();
    assert!(
        out.stderr.contains("mutated by the kaji test webhook"),
        "{}",
        out.stderr
    );
    let label = cluster.kubectl(&[
        "get",
        "configmap",
        "good",
        "-o",
        "jsonpath={.metadata.labels.mutated-by}",
    ]);
    assert_eq!(label.success(), "kaji-test");
    cluster
        .kubectl_stdin(
            &["create", "-f", "-"],
            Some(&crontab("good", "{admission-test: 'yes'}")),
        )
        .success();
    let label = cluster.kubectl(&[
        "get",
        "crontab",
        "good",
        "-o",
        "jsonpath={.metadata.labels.mutated-by}",
    ]);
    assert_eq!(label.success(), "kaji-test");

    // Objects the selectors leave out are untouched.
    cluster
        .kubectl_stdin(
            &["create", "-f", "-"],
            Some(&configmap("plain", "{forbidden: 'yes'}")),
        )
        .success();
    let labels = cluster.kubectl(&[
        "get",
        "configmap",
        "plain",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(
        !labels.success().contains("mutated-by"),
        "{}",
        labels.stdout
    );

    // Removing the configurations stops the webhooks.
    cluster
        .kubectl(&["delete", "validatingwebhookconfiguration", "deny.kaji.test"])
        .success();
    let out = until(&cluster, &bad, |o| o.ok);
    out.success();
}
