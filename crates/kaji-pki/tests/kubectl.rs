//! The real client: `kubectl --kubeconfig <written file> get --raw /` against
//! a tiny TLS server that answers with who `Pki::authenticate` says it is.
//! Skipped (with a note) when `kubectl` is not on the PATH.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kaji_pki::Pki;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Answers one HTTP/1.1 request on `tls`: 200 with the user's name when
/// authenticated, 401 otherwise. Enough HTTP for `kubectl get --raw`.
async fn answer(pki: &Pki, tcp: tokio::net::TcpStream, acceptor: TlsAcceptor) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let peer_certs = tls.get_ref().1.peer_certificates().map(<[_]>::to_vec);
    let mut tls = BufReader::new(tls);
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if tls.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    let (status, body) = match pki.authenticate(peer_certs.as_deref(), authorization.as_deref()) {
        Some(user) => (
            "200 OK",
            format!(
                r#"{{"user":"{}","groups":"{}"}}"#,
                user.name,
                user.groups.join(",")
            ),
        ),
        None => (
            "401 Unauthorized",
            r#"{"kind":"Status","code":401}"#.to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let tls = tls.get_mut();
    let _ = tls.write_all(response.as_bytes()).await;
    let _ = tls.shutdown().await;
}

#[tokio::test]
async fn kubectl_should_reach_a_tls_server_with_the_written_kubeconfig_as_kaji_admin() {
    let Ok(version) = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    else {
        eprintln!("kubectl not found on PATH; skipping the kubectl check");
        return;
    };
    assert!(version.status.success());

    let data = tempfile::tempdir().unwrap();
    let pki = Arc::new(Pki::load_or_create(data.path(), &[]).unwrap());
    // This tiny server speaks only HTTP/1.1, so it offers only that; the
    // ALPN list of the real config (h2 first) is covered by tests/tls.rs.
    let mut config = (*pki.server_config().unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server_pki = pki.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (pki, acceptor) = (server_pki.clone(), acceptor.clone());
            tokio::spawn(async move { answer(&pki, tcp, acceptor).await });
        }
    });

    let kubeconfig = pki
        .write_kubeconfig(
            &data.path().join("kubeconfig"),
            &format!("https://127.0.0.1:{port}"),
        )
        .unwrap();
    let home = data.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let run = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(["--request-timeout=10s", "get", "--raw", "/"])
        .env("HOME", &home)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("kubectl finished within a minute")
        .unwrap();
    server.abort();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl failed: {stderr}\n{stdout}"
    );
    assert!(stdout.contains(r#""user":"kaji-admin""#), "{stdout}");
    assert!(stdout.contains("system:masters"), "{stdout}");
}
