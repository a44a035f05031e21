//! The SQLite backend passes the whole conformance suite, each test on a fresh database.

kaji_store::store_conformance_tests!(async {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = kaji_store_sqlite::SqliteStore::open(dir.path().join("kaji.db")).expect("open");
    (store, dir)
});
