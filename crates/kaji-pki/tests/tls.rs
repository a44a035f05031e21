//! Real TLS handshakes on 127.0.0.1 with tokio-rustls, and authentication of
//! what they yield.

use std::sync::Arc;

use kaji_pki::{Pki, UserInfo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the server saw of one handshake.
struct Seen {
    alpn: Option<Vec<u8>>,
    peer_certs: Option<Vec<CertificateDer<'static>>>,
}

/// Runs one handshake between `pki`'s server config and `client`, dialing
/// `server_name`; the server writes "ok" once the handshake is done. Returns
/// the server's view and the client's negotiated ALPN, or the first error.
async fn handshake(
    pki: &Pki,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> Result<(Seen, Option<Vec<u8>>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(pki.server_config().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let seen = Seen {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer_certs: conn.peer_certificates().map(<[_]>::to_vec),
        };
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(seen)
    });

    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client_result = async {
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        if reply != b"ok" {
            return Err(format!("server replied {reply:?}"));
        }
        Ok(alpn)
    }
    .await;
    let seen = server.await.unwrap()?;
    Ok((seen, client_result?))
}

fn roots(pki: &Pki) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pki.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts `pki`'s CA, presents no certificate and offers `alpn`.
fn anonymous_client(pki: &Pki, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(pki))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn admin() -> UserInfo {
    UserInfo {
        name: "kaji-admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    }
}

#[tokio::test]
async fn a_handshake_trusting_the_ca_should_succeed_and_negotiate_h2() {
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(data.path(), &[]).unwrap();
    for name in ["127.0.0.1", "localhost"] {
        let client = anonymous_client(&pki, &[b"h2", b"http/1.1"]);
        let (seen, client_alpn) = handshake(&pki, client, name).await.unwrap();
        assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]), "{name}");
        assert_eq!(client_alpn.as_deref(), Some(&b"h2"[..]));
        assert!(seen.peer_certs.is_none(), "no client certificate offered");
        assert_eq!(pki.authenticate(seen.peer_certs.as_deref(), None), None);
    }
}

#[tokio::test]
async fn a_client_offering_only_http1_should_negotiate_http1() {
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(data.path(), &[]).unwrap();
    let client = anonymous_client(&pki, &[b"http/1.1"]);
    let (seen, _) = handshake(&pki, client, "127.0.0.1").await.unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn an_extra_san_should_be_dialable_after_reissue() {
    let data = tempfile::tempdir().unwrap();
    Pki::load_or_create(data.path(), &[]).unwrap();
    let pki = Pki::load_or_create(data.path(), &["kaji.test".into()]).unwrap();
    let client = anonymous_client(&pki, &[b"h2"]);
    handshake(&pki, client, "kaji.test").await.unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_should_fail_the_handshake() {
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(data.path(), &[]).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::load_or_create(other_dir.path(), &[]).unwrap();
    let client = anonymous_client(&other, &[b"h2"]);
    assert!(handshake(&pki, client, "127.0.0.1").await.is_err());
}

#[tokio::test]
async fn a_handshake_presenting_the_admin_cert_should_authenticate_as_kaji_admin() {
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(data.path(), &[]).unwrap();
    let client = pki.admin_client_config().unwrap();
    let (seen, client_alpn) = handshake(&pki, client, "127.0.0.1").await.unwrap();
    assert_eq!(client_alpn.as_deref(), Some(&b"h2"[..]));
    let certs = seen.peer_certs.expect("the admin cert reached the server");
    let user = pki.authenticate(Some(&certs), None).unwrap();
    assert_eq!(user, admin());
    assert!(user.groups.contains(&"system:masters".to_owned()));
}

#[tokio::test]
async fn a_client_cert_from_another_ca_should_fail_the_handshake() {
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(data.path(), &[]).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::load_or_create(other_dir.path(), &[]).unwrap();

    let cert: Vec<_> = rustls_pemfile::certs(&mut other.admin_cert_pem().as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut other.admin_key_pem().as_bytes())
        .unwrap()
        .unwrap();
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&pki))
        .with_client_auth_cert(cert.clone(), key)
        .unwrap();
    assert!(handshake(&pki, Arc::new(client), "127.0.0.1")
        .await
        .is_err());
    // Nor does `authenticate` accept it if a caller broke the precondition.
    assert_eq!(pki.authenticate(Some(&cert), None), None);
}

#[test]
fn the_admin_bearer_token_should_authenticate_and_a_wrong_one_should_not() {
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(data.path(), &[]).unwrap();
    let good = format!("Bearer {}", pki.admin_token());
    assert_eq!(pki.authenticate(None, Some(&good)), Some(admin()));

    let mut wrong = pki.admin_token().to_owned();
    let last = if wrong.ends_with('A') { "B" } else { "A" };
    wrong.replace_range(wrong.len() - 1.., last);
    assert_eq!(
        pki.authenticate(None, Some(&format!("Bearer {wrong}"))),
        None
    );
    assert_eq!(pki.authenticate(None, Some("Bearer ")), None);
    assert_eq!(pki.authenticate(None, Some(pki.admin_token())), None);
    assert_eq!(
        pki.authenticate(None, Some(&format!("Basic {}", pki.admin_token()))),
        None
    );
    assert_eq!(pki.authenticate(None, None), None);
}

#[test]
fn a_token_from_another_cluster_should_not_authenticate() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let pki_a = Pki::load_or_create(a.path(), &[]).unwrap();
    let pki_b = Pki::load_or_create(b.path(), &[]).unwrap();
    let header = format!("Bearer {}", pki_b.admin_token());
    assert_eq!(pki_a.authenticate(None, Some(&header)), None);
}
