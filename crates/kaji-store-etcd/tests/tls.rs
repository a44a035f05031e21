//! etcd over TLS with client-certificate authentication, as production
//! clusters run it: the store connects with a CA and a client certificate,
//! and is refused without one.

use kaji_store::Store;
use kaji_store_etcd::testing::EtcdCluster;
use kaji_store_etcd::{EtcdConfig, EtcdStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_speaks_tls_with_a_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    kaji_pki::Pki::load_or_create(pki.path(), &["127.0.0.1".to_string()]).unwrap();
    let dir = pki.path().join("pki");
    let etcd = tokio::task::spawn_blocking(move || EtcdCluster::start_tls(1, &dir))
        .await
        .unwrap();
    assert!(etcd.store_url().starts_with("etcds://"));

    let store = EtcdStore::connect(&etcd.config()).await.unwrap();
    let kv = store.create("/tls/k", b"v".to_vec()).await.unwrap();
    assert_eq!(store.get("/tls/k", None).await.unwrap().0, Some(kv));

    // Without a client certificate etcd refuses the connection.
    let anonymous = EtcdConfig {
        client_cert_pem: None,
        ..etcd.config()
    };
    assert!(EtcdStore::connect(&anonymous).await.is_err());
}
