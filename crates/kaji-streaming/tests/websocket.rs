//! The protocol end to end: a real WebSocket client (as kubectl's) against
//! an axum endpoint streaming a real `sh` process.

use std::process::Stdio;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::Query;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use kaji_runtime::{ExecSession, RuntimeError};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(serde::Deserialize)]
struct Params {
    script: String,
}

fn session(script: &str) -> ExecSession {
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sh runs");
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    ExecSession {
        stdin: Some(Box::pin(stdin)),
        stdout: Box::pin(stdout),
        stderr: Box::pin(stderr),
        exit_code: Box::pin(async move {
            let status = child
                .wait()
                .await
                .map_err(|e| RuntimeError::io("waiting for sh", e))?;
            Ok(status.code().unwrap_or(137))
        }),
    }
}

async fn exec(ws: WebSocketUpgrade, Query(p): Query<Params>) -> impl IntoResponse {
    ws.protocols(kaji_streaming::PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let protocol = socket
                .protocol()
                .and_then(|p| p.to_str().ok())
                .unwrap_or("")
                .to_string();
            let command = vec!["sh".to_string(), "-c".to_string(), p.script.clone()];
            kaji_streaming::serve(socket, session(&p.script), command, &protocol).await;
        })
}

async fn server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/exec", get(exec));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("ws://{addr}/exec")
}

/// Runs `script` with `stdin`, returning (stdout, stderr, final status).
async fn run(protocol: &str, script: &str, stdin: &[u8]) -> (Vec<u8>, Vec<u8>, serde_json::Value) {
    let base = server().await;
    let url = format!("{base}?script={}", url_escape(script));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        protocol.split(',').next().unwrap().trim()
    );
    let mut frame = vec![0u8];
    frame.extend_from_slice(stdin);
    ws.send(Message::Binary(frame.into())).await.unwrap();
    ws.send(Message::Binary(vec![255u8, 0].into()))
        .await
        .unwrap();
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), serde_json::Value::Null);
    let read = async {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Binary(data) = message {
                match data[0] {
                    1 => out.extend_from_slice(&data[1..]),
                    2 => err.extend_from_slice(&data[1..]),
                    3 => status = serde_json::from_slice(&data[1..]).unwrap(),
                    c => panic!("unexpected channel {c}"),
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("the session ends by itself");
    (out, err, status)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn stdin_flows_in_and_stdout_and_stderr_come_back_on_their_channels() {
    let (out, err, status) = run(
        "v5.channel.k8s.io, v4.channel.k8s.io",
        "tr a-z A-Z; echo oops >&2",
        b"hello\n",
    )
    .await;
    assert_eq!(out, b"HELLO\n");
    assert_eq!(err, b"oops\n");
    assert_eq!(status["status"], "Success");
}

#[tokio::test]
async fn a_failing_command_reports_its_exit_code_in_the_status() {
    let (_, _, status) = run("v5.channel.k8s.io", "exit 7", b"").await;
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "7");
}

#[tokio::test]
async fn version_4_clients_are_served_too() {
    let (out, _, status) = run("v4.channel.k8s.io", "echo v4", b"").await;
    assert_eq!(out, b"v4\n");
    assert_eq!(status["status"], "Success");
}
