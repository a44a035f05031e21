//! Bodies captured from `kubectl` 1.32 (`kubectl create <generator>` against a recording
//! server) decode to the JSON in the `.json` file beside each `.pb`, and that JSON encodes
//! back to a body that decodes the same.
//!
//! To re-record after an intended change: `KAJI_PROTOBUF_BLESS=1 cargo test -p kaji-protobuf
//! --test kubectl_bodies`, then review the `.json` diffs.

use std::path::Path;

#[test]
fn every_captured_kubectl_body_should_decode_to_its_recorded_json() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubectl");
    let bless = std::env::var_os("KAJI_PROTOBUF_BLESS").is_some();
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for pb in entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pb"))
    {
        let body = std::fs::read(&pb).unwrap();
        let decoded =
            kaji_protobuf::decode(&body).unwrap_or_else(|e| panic!("{}: {e}", pb.display()));
        let golden = pb.with_extension("json");
        if bless {
            std::fs::write(
                &golden,
                serde_json::to_string_pretty(&decoded).unwrap() + "\n",
            )
            .unwrap();
        }
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&golden).unwrap()).unwrap();
        assert_eq!(decoded, expected, "{}", pb.display());
        let again = kaji_protobuf::decode(&kaji_protobuf::encode(&decoded).unwrap()).unwrap();
        assert_eq!(again, decoded, "{} after encode", pb.display());
        seen += 1;
    }
    assert!(seen >= 17, "only {seen} fixtures");
}
