//! The fault-injecting wrapper: transparent when switched off (or when it
//! only adds latency), and never half-writes when it fails a write.

use std::sync::Arc;
use std::time::Duration;

use kaji_store::faults::{FaultConfig, FaultyStore};
use kaji_store::{MemoryStore, Store, StoreError};

fn noisy(seed: u64) -> FaultConfig {
    FaultConfig {
        latency: Duration::ZERO..Duration::from_millis(1),
        error_rate: 0.2,
        conflict_rate: 0.2,
        seed,
    }
}

/// Faults switched off: the whole conformance suite, as for the inner store.
mod switched_off {
    use super::*;

    kaji_store::store_conformance_tests!(async {
        let store = FaultyStore::new(Arc::new(MemoryStore::new()), noisy(1));
        store.set_enabled(false);
        store
    });
}

/// Latency alone changes no semantics.
mod latency_only {
    use super::*;

    kaji_store::store_conformance_tests!(async {
        let config = FaultConfig {
            latency: Duration::ZERO..Duration::from_micros(300),
            ..FaultConfig::default()
        };
        FaultyStore::new(Arc::new(MemoryStore::new()), config)
    });
}

/// Everything the inner store holds under `/k`, at its current revision.
async fn snapshot(store: &dyn Store) -> (i64, Vec<kaji_store::KeyValue>) {
    let list = store.list("/k", Default::default()).await.unwrap();
    (store.current_revision().await.unwrap(), list.kvs)
}

#[tokio::test]
async fn injected_failures_never_reach_the_inner_store() {
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let store = FaultyStore::new(inner.clone(), noisy(42));
    let (mut ok, mut failed) = (0, 0);
    for round in 0..400u32 {
        let key = format!("/k/{}", round % 7);
        let before = snapshot(inner.as_ref()).await;
        let current = before.1.iter().find(|kv| kv.key == key).cloned();
        let value = round.to_be_bytes().to_vec();
        let result = match (&current, round % 3) {
            (None, _) => store.create(&key, value).await.map(drop),
            (Some(kv), 0) => store.delete(&key, Some(kv.mod_revision)).await.map(drop),
            (Some(kv), _) => store.update(&key, value, kv.mod_revision).await.map(drop),
        };
        match result {
            Ok(()) => {
                ok += 1;
                assert_eq!(inner.current_revision().await.unwrap(), before.0 + 1);
            }
            Err(StoreError::Backend { .. }) => {
                failed += 1;
                assert_eq!(snapshot(inner.as_ref()).await, before, "round {round}");
            }
            Err(StoreError::Conflict {
                current: Some(now), ..
            }) => {
                failed += 1;
                assert_eq!(Some(now), current, "a conflict reports the real value");
                assert_eq!(snapshot(inner.as_ref()).await, before, "round {round}");
            }
            Err(e) => panic!("round {round}: unexpected {e:?}"),
        }
    }
    let injected = store.injected();
    assert_eq!(injected.errors + injected.conflicts, failed);
    assert!(injected.errors > 40, "{injected:?}");
    assert!(injected.conflicts > 20, "{injected:?}");
    assert!(ok > 150, "{ok} writes succeeded");
}

#[tokio::test]
async fn a_caller_retrying_on_injected_faults_ends_in_the_same_state() {
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let store = FaultyStore::new(inner.clone(), noisy(9));
    for i in 0..20 {
        let key = format!("/k/{i}");
        while store.create(&key, b"0".to_vec()).await.is_err() {}
        for n in 1..5u8 {
            loop {
                let (kv, _) = store.get(&key, None).await.unwrap();
                let rev = kv.unwrap().mod_revision;
                if store.update(&key, vec![b'0' + n], rev).await.is_ok() {
                    break;
                }
            }
        }
    }
    let (revision, kvs) = snapshot(inner.as_ref()).await;
    assert_eq!(revision, 20 * 5, "exactly one revision per landed write");
    assert!(kvs.iter().all(|kv| kv.value == b"4"));
    assert!(store.injected().errors > 0);
}
