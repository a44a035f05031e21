//! Generation, reload, reissue and the kubeconfig, on a real temporary directory.

use std::fs;
use std::path::Path;

use kaji_pki::{Pki, PkiError};

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn generation_then_reload_should_give_the_same_ca_token_and_certificates() {
    let data = tempfile::tempdir().unwrap();
    let first = Pki::load_or_create(data.path(), &[]).unwrap();
    let serving = read(&data.path().join("pki/apiserver.crt"));
    let second = Pki::load_or_create(data.path(), &[]).unwrap();

    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(first.admin_token(), second.admin_token());
    assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
    assert_eq!(serving, read(&data.path().join("pki/apiserver.crt")));
    assert!(first.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn the_admin_token_should_be_32_random_bytes_in_base64url() {
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(data.path(), &[]).unwrap();
    let token = pki.admin_token();
    assert_eq!(token.len(), 43, "32 bytes, unpadded base64url");
    assert!(token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        token,
        Pki::load_or_create(other.path(), &[])
            .unwrap()
            .admin_token()
    );
}

#[test]
fn a_missing_san_should_reissue_the_serving_cert_with_the_same_ca() {
    let data = tempfile::tempdir().unwrap();
    let first = Pki::load_or_create(data.path(), &[]).unwrap();
    let old_serving = read(&data.path().join("pki/apiserver.crt"));
    assert!(!first.serving_sans().contains(&"kaji.example".to_owned()));

    let extra = vec!["kaji.example".to_owned(), "192.0.2.7".to_owned()];
    let second = Pki::load_or_create(data.path(), &extra).unwrap();
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
    assert_eq!(first.admin_token(), second.admin_token());
    assert_ne!(old_serving, read(&data.path().join("pki/apiserver.crt")));
    let sans = second.serving_sans();
    for want in ["localhost", "127.0.0.1", "::1", "kaji.example", "192.0.2.7"] {
        assert!(sans.contains(&want.to_owned()), "{want} in {sans:?}");
    }

    // The same request again is already covered: no further reissue.
    let reissued = read(&data.path().join("pki/apiserver.crt"));
    Pki::load_or_create(data.path(), &extra).unwrap();
    assert_eq!(reissued, read(&data.path().join("pki/apiserver.crt")));
}

#[test]
fn a_deleted_admin_cert_should_be_reissued_by_the_same_ca() {
    let data = tempfile::tempdir().unwrap();
    let first = Pki::load_or_create(data.path(), &[]).unwrap();
    fs::remove_file(data.path().join("pki/admin.crt")).unwrap();
    let second = Pki::load_or_create(data.path(), &[]).unwrap();
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_ne!(first.admin_cert_pem(), second.admin_cert_pem());
}

#[test]
fn a_corrupt_ca_should_be_an_error_rather_than_silently_replaced() {
    let data = tempfile::tempdir().unwrap();
    Pki::load_or_create(data.path(), &[]).unwrap();
    fs::write(data.path().join("pki/ca.crt"), "garbage").unwrap();
    let err = Pki::load_or_create(data.path(), &[]).unwrap_err();
    assert!(matches!(err, PkiError::Invalid { .. }), "{err:?}");
}

#[test]
fn an_invalid_extra_san_should_be_rejected() {
    let data = tempfile::tempdir().unwrap();
    let err = Pki::load_or_create(data.path(), &["not a host".to_owned()]).unwrap_err();
    assert!(matches!(err, PkiError::InvalidSan { .. }), "{err:?}");
}

#[cfg(unix)]
#[test]
fn every_pki_file_should_be_mode_0600_in_a_0700_directory() {
    let data = tempfile::tempdir().unwrap();
    Pki::load_or_create(data.path(), &[]).unwrap();
    let dir = data.path().join("pki");
    assert_eq!(mode(&dir), 0o700);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "admin.crt",
            "admin.key",
            "admin.token",
            "apiserver.crt",
            "apiserver.key",
            "ca.crt",
            "ca.key"
        ]
    );
    for name in names {
        assert_eq!(mode(&dir.join(&name)), 0o600, "{name}");
    }
}

#[test]
fn the_written_kubeconfig_should_parse_as_yaml_with_the_expected_structure() {
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(data.path(), &[]).unwrap();
    let path = pki
        .write_kubeconfig(&data.path().join("kubeconfig"), "https://127.0.0.1:6443")
        .unwrap();
    assert_eq!(path, data.path().join("kubeconfig"));
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);

    let doc: serde_yaml::Value = serde_yaml::from_str(&read(&path)).unwrap();
    let s = |v: &serde_yaml::Value| v.as_str().unwrap().to_owned();
    assert_eq!(s(&doc["apiVersion"]), "v1");
    assert_eq!(s(&doc["kind"]), "Config");
    assert_eq!(s(&doc["current-context"]), "kaji");

    let cluster = &doc["clusters"][0];
    assert_eq!(s(&cluster["name"]), "kaji");
    assert_eq!(s(&cluster["cluster"]["server"]), "https://127.0.0.1:6443");
    let ca = b64(&s(&cluster["cluster"]["certificate-authority-data"]));
    assert_eq!(ca, pki.ca_pem());

    let user = &doc["users"][0];
    assert_eq!(s(&user["name"]), "kaji-admin");
    assert_eq!(
        b64(&s(&user["user"]["client-certificate-data"])),
        pki.admin_cert_pem()
    );
    assert_eq!(
        b64(&s(&user["user"]["client-key-data"])),
        pki.admin_key_pem()
    );
    assert!(user["user"].get("token").is_none(), "no token in the file");

    let context = &doc["contexts"][0];
    assert_eq!(s(&context["name"]), "kaji");
    assert_eq!(s(&context["context"]["cluster"]), "kaji");
    assert_eq!(s(&context["context"]["user"]), "kaji-admin");
    assert_eq!(s(&context["context"]["namespace"]), "default");
}

#[test]
fn writing_the_kubeconfig_into_a_directory_should_name_the_file_kubeconfig() {
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(data.path(), &[]).unwrap();
    let path = pki
        .write_kubeconfig(data.path(), "https://localhost:6443")
        .unwrap();
    assert_eq!(path, data.path().join("kubeconfig"));
    assert!(read(&path).contains("https://localhost:6443"));
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    String::from_utf8(bytes).unwrap()
}
