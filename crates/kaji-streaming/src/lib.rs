//! Kubernetes' remote command protocol over WebSocket, as `kubectl exec` and
//! `kubectl attach` speak it (sub-protocols `v5.channel.k8s.io` and
//! `v4.channel.k8s.io`): every binary message starts with a channel byte —
//! 0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 terminal resize, and
//! in v5, 255 for "the client closed this channel" (stdin's end of file).
//!
//! This crate owns only the framing between one WebSocket and one runtime
//! [`ExecSession`]; it must not know about pods, nodes or authentication —
//! the node agent decides what may run and hands over the session.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use kaji_runtime::ExecSession;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The sub-protocols served, most preferred first: offer these to
/// `WebSocketUpgrade::protocols`.
pub const PROTOCOLS: [&str; 2] = [V5, V4];

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

/// The Status sent on the error channel when a command ends: success, or
/// `NonZeroExitCode` with the code in a cause, from which kubectl takes its
/// own exit code.
pub fn exit_status(command: &[String], exit_code: i32) -> serde_json::Value {
    if exit_code == 0 {
        return serde_json::json!({"metadata": {}, "status": "Success"});
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {exit_code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]},
    })
}

/// A Status for a command that could not run at all.
pub fn failure_status(message: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

/// Streams `session` over `socket` until the command ends and its output
/// is sent, then sends the final Status and closes the socket.
///
/// `protocol` is the sub-protocol the upgrade agreed on; only v5 lets the
/// client signal the end of stdin, so under v4 stdin stays open until the
/// socket closes.
pub async fn serve(socket: WebSocket, session: ExecSession, command: Vec<String>, protocol: &str) {
    let v5 = protocol == V5;
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);

    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let stdout = tokio::spawn(pump(session.stdout, STDOUT, out_tx.clone()));
    let stderr = tokio::spawn(pump(session.stderr, STDERR, out_tx.clone()));

    let mut stdin = session.stdin;
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            match data.first() {
                Some(&STDIN) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data[1..]).await.is_err() || w.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(&CLOSE) if v5 && data.get(1) == Some(&STDIN) => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                // Resize needs a terminal, which runtimes do not allocate yet.
                _ => {}
            }
        }
        // Dropping stdin here gives the command end-of-file.
        drop(stdin);
    });

    let _ = stdout.await;
    let _ = stderr.await;
    let status = match session.exit_code.await {
        Ok(code) => exit_status(&command, code),
        Err(e) => failure_status(&e.to_string()),
    };
    let mut frame = vec![ERROR];
    frame.extend(serde_json::to_vec(&status).expect("JSON serializes"));
    let _ = out_tx.send(Message::Binary(Bytes::from(frame))).await;
    let _ = out_tx
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    drop(out_tx);
    let _ = writer.await;
    reader.abort();
}

/// Copies one output stream into channel-tagged messages.
async fn pump(
    mut from: std::pin::Pin<Box<dyn AsyncRead + Send>>,
    channel: u8,
    to: mpsc::Sender<Message>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf[1..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf[0] = channel;
        if to
            .send(Message::Binary(Bytes::copy_from_slice(&buf[..=n])))
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_zero_exit_carries_the_code_kubectl_exits_with() {
        let status = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(
            status["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        assert_eq!(exit_status(&[], 0)["status"], "Success");
    }
}
