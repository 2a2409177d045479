//! Disk full: the gate's data directory on a small tmpfs this test mounts
//! (it needs root; without it the test says so and passes nothing else).
//! While the filesystem is full, decisions are 503 `unavailable` and claim
//! nothing; when space returns, the gate decides again (after a restart if
//! the store stopped), nothing acknowledged is lost, and proofcheck audits
//! the whole log.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use protocol::{Decision, DecisionResponse};
use serde_json::Value;
use testkit::Proc;

mod common;
use common::intent;

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn decide(url: &str, token: &str, key: &str) -> (u16, Value) {
    let r = ureq::post(&format!("{url}/v1/decisions"))
        .set("authorization", &format!("Bearer {token}"))
        .send_string(&intent(key).to_string());
    match r {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{key}: {e}"),
    }
}

/// Fills the filesystem holding `dir` until a write fails.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

#[test]
fn a_full_disk_is_503_and_loses_nothing() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("disk_full: skipped, mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("mnt"), "64m") else {
        panic!("mounting a tmpfs failed although running as root");
    };
    let data = fs.0.join("data");
    let start = || Proc::start(testkit::tollgate_serve(&data), testkit::TOLLGATE_READY, 0);
    let mut gate = start();
    let token = std::fs::read_to_string(data.join("demo.token"))
        .unwrap()
        .trim()
        .to_string();
    let mut acknowledged: Vec<(String, DecisionResponse)> = Vec::new();
    for i in 0..20 {
        let (status, body) = decide(&gate.url, &token, &format!("before-{i}"));
        assert_eq!(status, 200, "{body}");
        acknowledged.push((format!("before-{i}"), serde_json::from_value(body).unwrap()));
    }

    // Full: decide until the log cannot take more (space the store set aside
    // beforehand may take a few first). Every answer is a decision or 503.
    let filler = fill(&fs.0);
    let mut refused = Vec::new();
    for i in 0..20_000 {
        let key = format!("full-{i}");
        let (status, body) = decide(&gate.url, &token, &key);
        match status {
            200 => acknowledged.push((key, serde_json::from_value(body).unwrap())),
            503 => {
                assert_eq!(body["error"], "unavailable", "{body}");
                refused.push(key);
                if refused.len() == 10 {
                    break;
                }
            }
            other => panic!("{key}: {other} {body}"),
        }
    }
    assert_eq!(refused.len(), 10, "a full disk never refused a decision");
    // Not ready, and says why; still serving what it has.
    let Err(ureq::Error::Status(503, r)) = ureq::get(&format!("{}/readyz", gate.url)).call() else {
        panic!("/readyz is ready on a full disk");
    };
    let why = r.into_string().unwrap();
    assert!(why.contains("No space left on device"), "{why}");
    assert_eq!(
        ureq::get(&format!("{}/healthz", gate.url))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
        "ok\n"
    );

    // Space returns. Without a restart, or after one.
    std::fs::remove_file(filler).unwrap();
    let (status, _) = decide(&gate.url, &token, "after-0");
    let restarted = status != 200;
    if restarted {
        drop(gate);
        gate = start();
        let (status, body) = decide(&gate.url, &token, "after-0");
        assert_eq!(status, 200, "after a restart with space: {body}");
    }
    ureq::get(&format!("{}/readyz", gate.url))
        .call()
        .expect("ready again");
    for (key, r) in &acknowledged {
        let (status, body) = decide(&gate.url, &token, key);
        assert_eq!(status, 200, "{key}: {body}");
        let again: DecisionResponse = serde_json::from_value(body).unwrap();
        assert!(again.replayed, "{key}");
        assert_eq!(again.receipt, r.receipt, "{key}");
        assert_eq!(again.log_index, r.log_index, "{key}");
        assert_eq!(again.decision, Decision::Permit);
    }
    // The refused ones claimed nothing: asked again, each is decided now.
    for key in &refused {
        let (status, body) = decide(&gate.url, &token, key);
        assert_eq!(status, 200, "{key}: {body}");
    }
    eprintln!(
        "disk_full: {} acknowledged, {} refused while full, {}",
        acknowledged.len(),
        refused.len(),
        if restarted {
            "recovered after a restart"
        } else {
            "recovered without a restart"
        }
    );
    testkit::audit(&gate.url, &data, &dir.path().join("audit.json"));
    drop(gate);
    drop(fs);
}
