//! The conformance suite every [`Store`] backend must pass.
//!
//! Each check is a public async function taking a fresh, empty store and
//! panicking on failure. [`store_conformance_tests!`](crate::store_conformance_tests)
//! expands into one `#[tokio::test]` per check, so a backend's test file is one line:
//!
//! ```ignore
//! kaji_store::store_conformance_tests!(async { kaji_store::MemoryStore::new() });
//! ```
//!
//! The factory may also yield `(store, guard)`, e.g. a store and the
//! temporary directory that must outlive it.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;

use crate::{
    EventType, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchEvent,
    WatchStream,
};

/// What a conformance factory yields: a store, possibly with something that
/// must live as long as it (a temporary directory).
pub trait Fixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn Store;
}

impl<S: Store> Fixture for S {
    fn store(&self) -> &dyn Store {
        self
    }
}

impl<S: Store, G: Send + Sync> Fixture for (S, G) {
    fn store(&self) -> &dyn Store {
        &self.0
    }
}

/// How long a watch may stay silent before a check fails instead of hanging.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Expands into one `#[tokio::test]` per conformance check.
///
/// The argument is an expression evaluating to a future of a fresh
/// [`Fixture`] (a store, or `(store, guard)`); it is evaluated once per test.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@each $factory;
            revisions_increase_by_one_per_write,
            create_only_if_absent,
            update_is_compare_and_swap,
            delete_is_compare_and_swap,
            recreate_gets_new_create_revision,
            reads_at_past_revisions,
            reads_beyond_current_revision_fail,
            list_paginates_over_many_keys,
            prefixes_are_isolated,
            count_counts_live_keys,
            watch_from_now_sees_only_future_changes,
            watch_replays_from_past_revision_then_goes_live,
            watch_has_no_gap_or_duplicate_while_writes_race,
            watch_reports_prev_values_and_deletes,
            compaction_hides_older_revisions,
            concurrent_writers_get_distinct_revisions,
            large_values_round_trip,
        );
    };
    (@each $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $factory.await;
                $crate::conformance::$check($crate::conformance::Fixture::store(&fixture)).await;
            }
        )+
    };
}

fn opts(revision: Option<Revision>, start_after: Option<&str>, limit: usize) -> ListOptions {
    ListOptions {
        revision,
        start_after: start_after.map(str::to_owned),
        limit: Some(limit),
    }
}

async fn list_all(store: &dyn Store, prefix: &str, revision: Option<Revision>) -> ListResult {
    store
        .list(
            prefix,
            ListOptions {
                revision,
                ..ListOptions::default()
            },
        )
        .await
        .expect("list")
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

async fn next_event(w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(WATCH_TIMEOUT, w.next()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {WATCH_TIMEOUT:?}"),
    }
}

async fn assert_silent(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), w.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

/// Every successful write (create, update, delete) bumps the global revision
/// by exactly one; failed writes do not.
pub async fn revisions_increase_by_one_per_write(store: &dyn Store) {
    // An empty store is at 0, or (etcd) at the revision it started with.
    let base = store.current_revision().await.unwrap();
    assert!(base <= 1, "a fresh store starts at revision {base}");
    let a = store.create("/r/a", b"1".to_vec()).await.unwrap();
    assert_eq!(a.mod_revision, base + 1);
    let b = store.create("/r/b", b"1".to_vec()).await.unwrap();
    assert_eq!(b.mod_revision, base + 2);
    assert!(store.create("/r/a", b"x".to_vec()).await.is_err());
    assert!(store.update("/r/a", b"x".to_vec(), 99).await.is_err());
    assert_eq!(store.current_revision().await.unwrap(), base + 2);
    let a2 = store
        .update("/r/a", b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    assert_eq!(a2.mod_revision, base + 3);
    let (del, _) = store.delete("/r/b", None).await.unwrap();
    assert_eq!(del, base + 4);
    assert_eq!(store.current_revision().await.unwrap(), base + 4);
    let (_, at) = store.get("/r/a", None).await.unwrap();
    assert_eq!(at, base + 4);
    assert_eq!(list_all(store, "/r/", None).await.revision, base + 4);
}

/// `create` succeeds only for an absent key.
pub async fn create_only_if_absent(store: &dyn Store) {
    let kv = store.create("/c/k", b"v1".to_vec()).await.unwrap();
    assert_eq!(kv.key, "/c/k");
    assert_eq!(kv.value, b"v1");
    assert_eq!(kv.create_revision, kv.mod_revision);
    match store.create("/c/k", b"v2".to_vec()).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "/c/k"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let (got, _) = store.get("/c/k", None).await.unwrap();
    assert_eq!(got, Some(kv));
    let (missing, _) = store.get("/c/none", None).await.unwrap();
    assert_eq!(missing, None);
}

/// `update` applies only at the expected revision and reports the current kv otherwise.
pub async fn update_is_compare_and_swap(store: &dyn Store) {
    let v1 = store.create("/u/k", b"v1".to_vec()).await.unwrap();
    let v2 = store
        .update("/u/k", b"v2".to_vec(), v1.mod_revision)
        .await
        .unwrap();
    assert_eq!(v2.create_revision, v1.create_revision);
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(v2.value, b"v2");
    match store.update("/u/k", b"v3".to_vec(), v1.mod_revision).await {
        Err(StoreError::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!(key, "/u/k");
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(current, Some(v2.clone()));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(matches!(
        store.update("/u/none", b"x".to_vec(), 1).await,
        Err(StoreError::NotFound { .. })
    ));
    store.delete("/u/k", Some(v2.mod_revision)).await.unwrap();
    assert!(matches!(
        store.update("/u/k", b"x".to_vec(), v2.mod_revision).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// `delete` honours the expected revision, returns the deleted kv, and makes a revision.
pub async fn delete_is_compare_and_swap(store: &dyn Store) {
    let v1 = store.create("/d/k", b"v1".to_vec()).await.unwrap();
    let v2 = store
        .update("/d/k", b"v2".to_vec(), v1.mod_revision)
        .await
        .unwrap();
    match store.delete("/d/k", Some(v1.mod_revision)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, Some(v2.clone())),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let (rev, deleted) = store.delete("/d/k", Some(v2.mod_revision)).await.unwrap();
    assert_eq!(deleted, v2);
    assert_eq!(rev, v2.mod_revision + 1);
    assert_eq!(store.current_revision().await.unwrap(), rev);
    assert_eq!(store.get("/d/k", None).await.unwrap().0, None);
    assert!(matches!(
        store.delete("/d/k", None).await,
        Err(StoreError::NotFound { .. })
    ));
    // Unconditional delete.
    let o = store.create("/d/other", b"o".to_vec()).await.unwrap();
    let (_, deleted) = store.delete("/d/other", None).await.unwrap();
    assert_eq!(deleted, o);
}

/// A key created again after a delete gets a fresh create revision.
pub async fn recreate_gets_new_create_revision(store: &dyn Store) {
    let first = store.create("/re/k", b"1".to_vec()).await.unwrap();
    store.delete("/re/k", None).await.unwrap();
    let second = store.create("/re/k", b"2".to_vec()).await.unwrap();
    assert!(second.create_revision > first.create_revision);
    assert_eq!(second.create_revision, second.mod_revision);
    let updated = store
        .update("/re/k", b"3".to_vec(), second.mod_revision)
        .await
        .unwrap();
    assert_eq!(updated.create_revision, second.create_revision);
}

/// `get` and `list` see the store as it was at any retained revision.
pub async fn reads_at_past_revisions(store: &dyn Store) {
    let a1 = store.create("/p/a", b"a1".to_vec()).await.unwrap();
    let b1 = store.create("/p/b", b"b1".to_vec()).await.unwrap();
    let a2 = store
        .update("/p/a", b"a2".to_vec(), a1.mod_revision)
        .await
        .unwrap();
    let (del, _) = store.delete("/p/b", None).await.unwrap();
    let c1 = store.create("/p/c", b"c1".to_vec()).await.unwrap();

    let (got, at) = store.get("/p/a", Some(a1.mod_revision)).await.unwrap();
    assert_eq!((got, at), (Some(a1.clone()), a1.mod_revision));
    assert_eq!(
        store.get("/p/a", Some(a2.mod_revision)).await.unwrap().0,
        Some(a2.clone())
    );
    assert_eq!(
        store.get("/p/b", Some(del - 1)).await.unwrap().0,
        Some(b1.clone())
    );
    assert_eq!(store.get("/p/b", Some(del)).await.unwrap().0, None);
    assert_eq!(
        store
            .get("/p/c", Some(c1.mod_revision - 1))
            .await
            .unwrap()
            .0,
        None
    );

    let at_b1 = list_all(store, "/p/", Some(b1.mod_revision)).await;
    assert_eq!(at_b1.kvs, vec![a1.clone(), b1.clone()]);
    assert_eq!(at_b1.revision, b1.mod_revision);
    let at_del = list_all(store, "/p/", Some(del)).await;
    assert_eq!(at_del.kvs, vec![a2.clone()]);
    let now = list_all(store, "/p/", None).await;
    assert_eq!(now.kvs, vec![a2, c1.clone()]);
    assert_eq!(now.revision, c1.mod_revision);
    assert!(!now.more);
}

/// Reading a revision newer than the current one fails with `FutureRevision`.
pub async fn reads_beyond_current_revision_fail(store: &dyn Store) {
    let kv = store.create("/f/k", b"v".to_vec()).await.unwrap();
    let future = kv.mod_revision + 1;
    assert!(matches!(
        store.get("/f/k", Some(future)).await,
        Err(StoreError::FutureRevision { requested, current })
            if requested == future && current == kv.mod_revision
    ));
    assert!(matches!(
        store.list("/f/", opts(Some(future), None, 0)).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

/// Paging with `start_after` and `limit` visits every key once, in order, with `more` exact.
pub async fn list_paginates_over_many_keys(store: &dyn Store) {
    const N: usize = 250;
    let mut expected = Vec::new();
    let mut third = None;
    for i in 0..N {
        let key = format!("/page/{i:04}");
        let kv = store
            .create(&key, i.to_string().into_bytes())
            .await
            .unwrap();
        if i == 3 {
            third = Some(kv);
        }
        expected.push(key);
    }
    // Deleted keys and keys outside the prefix must not count toward a page.
    store.create("/page/0000x", vec![]).await.unwrap();
    store.delete("/page/0000x", None).await.unwrap();
    store.create("/pagf", vec![]).await.unwrap();
    let pinned = store.current_revision().await.unwrap();
    // Writes after the pinned revision must not show in the paged list.
    store.create("/page/9999", vec![]).await.unwrap();
    store
        .update("/page/0003", b"new".to_vec(), third.unwrap().mod_revision)
        .await
        .unwrap();

    for limit in [1, 7, 50, N - 1, N, N + 1] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list("/page/", opts(Some(pinned), after.as_deref(), limit))
                .await
                .unwrap();
            assert_eq!(page.revision, pinned);
            assert!(page.kvs.len() <= limit);
            seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
            assert_eq!(
                page.more,
                seen.len() < N,
                "limit {limit}, seen {}",
                seen.len()
            );
            if !page.more {
                break;
            }
            assert_eq!(page.kvs.len(), limit);
            after = page.kvs.last().map(|kv| kv.key.clone());
        }
        assert_eq!(seen, expected, "limit {limit}");
    }
    let unlimited = store
        .list("/page/", opts(Some(pinned), None, 0))
        .await
        .unwrap();
    assert_eq!(unlimited.kvs.len(), N);
    assert_eq!(unlimited.kvs[3].value, b"3");
    assert!(!unlimited.more);
    let tail = store
        .list("/page/", opts(None, Some("/page/0247"), 0))
        .await
        .unwrap();
    assert_eq!(
        keys(&tail.kvs),
        vec!["/page/0248", "/page/0249", "/page/9999"]
    );
    // A start_after before the prefix is the same as none.
    let from_before = store
        .list("/page/", opts(None, Some("/a"), 2))
        .await
        .unwrap();
    assert_eq!(keys(&from_before.kvs), vec!["/page/0000", "/page/0001"]);
}

/// `/a/` never sees `/ab/` or `/a` itself, in list, count, get or watch.
pub async fn prefixes_are_isolated(store: &dyn Store) {
    let mut w = store.watch("/a/", 0).await.unwrap();
    store.create("/a", b"root".to_vec()).await.unwrap();
    store.create("/ab/x", b"ab".to_vec()).await.unwrap();
    store.create("/a/x", b"a".to_vec()).await.unwrap();
    store.create("/ab/y", b"ab".to_vec()).await.unwrap();
    store.create("/a/y", b"a".to_vec()).await.unwrap();
    store.create("/a0", b"a0".to_vec()).await.unwrap();
    let a = list_all(store, "/a/", None).await;
    assert_eq!(keys(&a.kvs), vec!["/a/x", "/a/y"]);
    let ab = list_all(store, "/ab/", None).await;
    assert_eq!(keys(&ab.kvs), vec!["/ab/x", "/ab/y"]);
    assert_eq!(store.count("/a/").await.unwrap(), 2);
    assert_eq!(store.count("/a").await.unwrap(), 6);
    assert_eq!(store.count("").await.unwrap(), 6);
    assert_eq!(keys(&list_all(store, "", None).await.kvs).len(), 6);
    assert_eq!(next_event(&mut w).await.kv.key, "/a/x");
    assert_eq!(next_event(&mut w).await.kv.key, "/a/y");
    assert_silent(&mut w).await;
}

/// `count` counts live keys only, at the latest revision.
pub async fn count_counts_live_keys(store: &dyn Store) {
    assert_eq!(store.count("/n/").await.unwrap(), 0);
    for i in 0..10 {
        store.create(&format!("/n/{i}"), vec![]).await.unwrap();
    }
    store.delete("/n/3", None).await.unwrap();
    let kv = store.create("/n/3", vec![1]).await.unwrap();
    store
        .update("/n/3", vec![2], kv.mod_revision)
        .await
        .unwrap();
    store.delete("/n/4", None).await.unwrap();
    assert_eq!(store.count("/n/").await.unwrap(), 9);
    assert_eq!(store.count("/n/3").await.unwrap(), 1);
    assert_eq!(store.count("/none/").await.unwrap(), 0);
}

/// A watch from revision 0 reports only changes made after it started.
pub async fn watch_from_now_sees_only_future_changes(store: &dyn Store) {
    store.create("/w/old", b"old".to_vec()).await.unwrap();
    let mut w = store.watch("/w/", 0).await.unwrap();
    assert_silent(&mut w).await;
    let kv = store.create("/w/new", b"new".to_vec()).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(e.event_type, EventType::Put);
    assert_eq!(e.kv, kv);
    assert_eq!(e.prev, None);
    assert_silent(&mut w).await;
}

/// A watch from a past revision replays history from that revision, then streams live.
pub async fn watch_replays_from_past_revision_then_goes_live(store: &dyn Store) {
    let a = store.create("/h/a", b"1".to_vec()).await.unwrap();
    let b = store.create("/h/b", b"1".to_vec()).await.unwrap();
    let a2 = store
        .update("/h/a", b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    store.create("/other", b"x".to_vec()).await.unwrap();
    let mut w = store.watch("/h/", b.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, b);
    let e = next_event(&mut w).await;
    assert_eq!(e.kv, a2);
    assert_eq!(e.prev, Some(a));
    let c = store.create("/h/c", b"1".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, c);
    assert_silent(&mut w).await;
    // Watching from the next revision (nothing to replay yet) is valid too.
    let mut w = store.watch("/h/", c.mod_revision + 1).await.unwrap();
    let d = store.create("/h/d", b"1".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, d);
}

/// Writes racing the watch setup are delivered exactly once, in order, without gaps.
pub async fn watch_has_no_gap_or_duplicate_while_writes_race(store: &dyn Store) {
    const WRITES: i64 = 300;
    const WATCHES: usize = 8;
    let first = store.create("/race/k0", vec![]).await.unwrap().mod_revision;
    let writer = async {
        for i in 1..WRITES {
            store.create(&format!("/race/k{i}"), vec![]).await.unwrap();
            if i % 8 == 0 {
                tokio::task::yield_now().await;
            }
        }
    };
    // Watches opened at staggered moments while the writes land, so that each
    // both replays and goes live, and its setup races the writes.
    let watcher = async {
        let mut from_start = Vec::new();
        let mut from_now = Vec::new();
        for _ in 0..WATCHES {
            tokio::task::yield_now().await;
            from_start.push(store.watch("/race/", first).await.unwrap());
            let before = store.current_revision().await.unwrap();
            let w = store.watch("/race/", 0).await.unwrap();
            let after = store.current_revision().await.unwrap();
            from_now.push((before, after, w));
        }
        (from_start, from_now)
    };
    let ((from_start, from_now), ()) = tokio::join!(watcher, writer);
    let end = store
        .create("/race/end", vec![])
        .await
        .unwrap()
        .mod_revision;
    let expected: Vec<Revision> = (first..=end).collect();
    for mut w in from_start {
        assert_eq!(collect_revisions(&mut w, end).await, expected);
        assert_silent(&mut w).await;
    }
    // A "from now" watch starts somewhere while it was being set up, then has no gap.
    for (before, after, mut w) in from_now {
        let live = collect_revisions(&mut w, end).await;
        assert!(live.windows(2).all(|w| w[1] == w[0] + 1), "gap: {live:?}");
        let start = live[0];
        assert!(
            before < start && start <= after + 1,
            "started at {start}, outside {before}..={after}"
        );
        assert_silent(&mut w).await;
    }
}

async fn collect_revisions(w: &mut WatchStream, last: Revision) -> Vec<Revision> {
    let mut revs = Vec::new();
    while revs.last().is_none_or(|r| *r < last) {
        revs.push(next_event(w).await.kv.mod_revision);
    }
    revs
}

/// Watch events carry previous values, and deletes come as delete events.
pub async fn watch_reports_prev_values_and_deletes(store: &dyn Store) {
    let mut w = store.watch("/e/", 0).await.unwrap();
    let v1 = store.create("/e/k", b"v1".to_vec()).await.unwrap();
    let v2 = store
        .update("/e/k", b"v2".to_vec(), v1.mod_revision)
        .await
        .unwrap();
    let (del, _) = store.delete("/e/k", None).await.unwrap();
    let v3 = store.create("/e/k", b"v3".to_vec()).await.unwrap();

    let check = |events: Vec<WatchEvent>| {
        assert_eq!(events[0].event_type, EventType::Put);
        assert_eq!(events[0].kv, v1);
        assert_eq!(events[0].prev, None);
        assert_eq!(events[1].event_type, EventType::Put);
        assert_eq!(events[1].kv, v2);
        assert_eq!(events[1].prev, Some(v1.clone()));
        assert_eq!(events[2].event_type, EventType::Delete);
        assert_eq!(events[2].kv.key, "/e/k");
        assert_eq!(events[2].kv.mod_revision, del);
        assert_eq!(events[2].kv.create_revision, 0);
        assert!(events[2].kv.value.is_empty());
        assert_eq!(events[2].prev, Some(v2.clone()));
        assert_eq!(events[3].event_type, EventType::Put);
        assert_eq!(events[3].kv, v3);
        assert_eq!(events[3].prev, None);
    };
    let mut live = Vec::new();
    for _ in 0..4 {
        live.push(next_event(&mut w).await);
    }
    check(live);
    // The same events, replayed from history.
    let mut w = store.watch("/e/", v1.mod_revision).await.unwrap();
    let mut replayed = Vec::new();
    for _ in 0..4 {
        replayed.push(next_event(&mut w).await);
    }
    check(replayed);
}

/// After `compact(r)`, revision `r` is readable and watchable; `r - 1` is gone.
pub async fn compaction_hides_older_revisions(store: &dyn Store) {
    assert_eq!(store.compacted_revision().await.unwrap(), 0);
    let a1 = store.create("/x/a", b"1".to_vec()).await.unwrap();
    let b1 = store.create("/x/b", b"1".to_vec()).await.unwrap();
    let a2 = store
        .update("/x/a", b"2".to_vec(), a1.mod_revision)
        .await
        .unwrap();
    let (b_del, _) = store.delete("/x/b", None).await.unwrap();
    let c1 = store.create("/x/c", b"1".to_vec()).await.unwrap();
    let a3 = store
        .update("/x/a", b"3".to_vec(), a2.mod_revision)
        .await
        .unwrap();
    let point = c1.mod_revision;
    let current = store.current_revision().await.unwrap();

    store.compact(point).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), point);
    assert_eq!(store.current_revision().await.unwrap(), current);

    let below = point - 1;
    assert!(matches!(
        store.get("/x/a", Some(below)).await,
        Err(StoreError::Compacted { requested, compacted }) if requested == below && compacted == point
    ));
    assert!(matches!(
        store.list("/x/", opts(Some(below), None, 0)).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        store.watch("/x/", below).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        store.watch("/x/", b1.mod_revision).await,
        Err(StoreError::Compacted { .. })
    ));

    // The compaction point itself still reads as before.
    assert_eq!(store.get("/x/a", Some(point)).await.unwrap().0, Some(a2));
    assert_eq!(store.get("/x/b", Some(point)).await.unwrap().0, None);
    assert!(b_del < point);
    let at_point = list_all(store, "/x/", Some(point)).await;
    assert_eq!(keys(&at_point.kvs), vec!["/x/a", "/x/c"]);
    let now = list_all(store, "/x/", None).await;
    assert_eq!(now.kvs, vec![a3.clone(), c1.clone()]);

    // Watching from the point replays the event at the point and after, with prev values.
    let mut w = store.watch("/x/", point).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, c1);
    let e = next_event(&mut w).await;
    assert_eq!(e.kv, a3);
    assert_eq!(e.prev.map(|p| p.value), Some(b"2".to_vec()));
    // Watching from now still works after compaction.
    let mut live = store.watch("/x/", 0).await.unwrap();
    let b2 = store.create("/x/b", b"again".to_vec()).await.unwrap();
    assert!(b2.create_revision > b1.create_revision);
    assert_eq!(next_event(&mut w).await.kv, b2);
    assert_eq!(next_event(&mut live).await.kv, b2);

    // Compacting into the future fails; compacting again further works.
    let current = store.current_revision().await.unwrap();
    assert!(matches!(
        store.compact(current + 1).await,
        Err(StoreError::FutureRevision { .. })
    ));
    store.compact(current).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), current);
    assert!(matches!(
        store.compact(point).await,
        Err(StoreError::Compacted { .. })
    ));
    let now = list_all(store, "/x/", None).await;
    assert_eq!(keys(&now.kvs), vec!["/x/a", "/x/b", "/x/c"]);
    assert_eq!(store.count("/x/").await.unwrap(), 3);
}

/// Many concurrent writers all get distinct revisions, and all their writes are visible.
pub async fn concurrent_writers_get_distinct_revisions(store: &dyn Store) {
    const TASKS: usize = 64;
    const WRITES: usize = 20;
    let base = store.current_revision().await.unwrap();
    let mut w = store.watch("/cw/", 0).await.unwrap();
    let tasks = (0..TASKS).map(|t| async move {
        let mut revs = Vec::with_capacity(WRITES);
        // Half the tasks create distinct keys; the other half update one key each.
        let own = format!("/cw/own/{t:02}");
        let mut last = store.create(&own, vec![]).await.unwrap().mod_revision;
        revs.push(last);
        for i in 1..WRITES {
            let kv = if t % 2 == 0 {
                store
                    .create(&format!("/cw/{t:02}/{i:02}"), vec![t as u8])
                    .await
            } else {
                store.update(&own, vec![i as u8], last).await
            }
            .unwrap();
            last = kv.mod_revision;
            revs.push(last);
        }
        revs
    });
    let results = futures::future::join_all(tasks).await;
    let mut all = HashSet::new();
    for revs in &results {
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "per-task order");
        for r in revs {
            assert!(all.insert(*r), "revision {r} handed out twice");
        }
    }
    let total = (TASKS * WRITES) as i64;
    assert_eq!(all.len() as i64, total);
    assert_eq!(store.current_revision().await.unwrap(), base + total);
    assert_eq!(
        all.iter().copied().min().zip(all.iter().copied().max()),
        Some((base + 1, base + total))
    );
    let listed = list_all(store, "/cw/", None).await;
    assert_eq!(listed.kvs.len(), TASKS + (TASKS / 2) * (WRITES - 1));
    for t in (1..TASKS).step_by(2) {
        let (kv, _) = store.get(&format!("/cw/own/{t:02}"), None).await.unwrap();
        assert_eq!(kv.map(|kv| kv.value), Some(vec![(WRITES - 1) as u8]));
    }
    let revs = collect_revisions(&mut w, base + total).await;
    assert_eq!(revs, (base + 1..=base + total).collect::<Vec<_>>());
}

/// Values of 1 MiB round-trip through create, update, get, list and watch.
pub async fn large_values_round_trip(store: &dyn Store) {
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut w = store.watch("/big/", 0).await.unwrap();
    let kv = store.create("/big/k", big.clone()).await.unwrap();
    let mut big2 = big.clone();
    big2.reverse();
    let kv2 = store
        .update("/big/k", big2.clone(), kv.mod_revision)
        .await
        .unwrap();
    assert_eq!(
        store.get("/big/k", None).await.unwrap().0.unwrap().value,
        big2
    );
    assert_eq!(
        store
            .get("/big/k", Some(kv.mod_revision))
            .await
            .unwrap()
            .0
            .unwrap()
            .value,
        big
    );
    assert_eq!(list_all(store, "/big/", None).await.kvs, vec![kv2.clone()]);
    assert_eq!(next_event(&mut w).await.kv.value, big);
    let e = next_event(&mut w).await;
    assert_eq!(e.kv.value, big2);
    assert_eq!(e.prev.map(|p| p.value), Some(big));
}
