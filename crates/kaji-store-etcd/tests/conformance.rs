//! The etcd backend passes the whole store conformance suite, each check
//! against a fresh real etcd (Debian's etcd-server) on loopback.

use kaji_store_etcd::testing::EtcdCluster;
use kaji_store_etcd::EtcdStore;

kaji_store::store_conformance_tests!(async {
    let etcd = tokio::task::spawn_blocking(|| EtcdCluster::start(1))
        .await
        .expect("etcd starts");
    let store = EtcdStore::connect(&etcd.config()).await.expect("connects");
    (store, etcd)
});
