//! Key and token files: generated 0600, read back, refused when others may read them.

use std::os::unix::fs::PermissionsExt;

use keyfile::{load_key, load_or_generate_key, load_or_generate_token, write_durable};
use note::KeyType;

const ORIGIN: &str = "example.com/log";

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn key_files_are_0600_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/log.key");
    let (k, generated) = load_or_generate_key(&path, ORIGIN, KeyType::Ed25519, true).unwrap();
    assert!(generated);
    assert_eq!(mode(&path), 0o600);
    let (again, generated) = load_or_generate_key(&path, ORIGIN, KeyType::Ed25519, true).unwrap();
    assert!(!generated);
    assert_eq!(again.verifier(), k.verifier());
    assert!(load_key(&path, Some("other.example/log"), KeyType::Ed25519).is_err());
    assert!(load_key(&path, None, KeyType::CosignatureV1).is_err());
    let (any_name, _) =
        load_or_generate_key(&path, "other.example/log", KeyType::Ed25519, false).unwrap();
    assert_eq!(any_name.verifier(), k.verifier());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = load_key(&path, Some(ORIGIN), KeyType::Ed25519).unwrap_err();
    assert!(err.to_string().contains("0600"), "{err}");
}

#[test]
fn token_files_are_generated_once_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.token");
    let (t, generated) = load_or_generate_token(&path).unwrap();
    assert!(generated);
    assert_eq!(t.len(), 64);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(load_or_generate_token(&path).unwrap(), (t, false));
    std::fs::write(&path, "short\n").unwrap();
    assert!(load_or_generate_token(&path)
        .unwrap_err()
        .to_string()
        .contains("shorter"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(load_or_generate_token(&path)
        .unwrap_err()
        .to_string()
        .contains("0600"));
}

#[test]
fn durable_writes_replace_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    write_durable(&path, b"one", 0o600).unwrap();
    write_durable(&path, b"two", 0o600).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    assert_eq!(mode(&path), 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["state.json"], "no temporary file is left behind");
}
