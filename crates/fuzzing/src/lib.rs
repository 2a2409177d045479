//! The fuzz targets' bodies, one function per parser of untrusted input.
//!
//! Each takes arbitrary bytes and must not panic, hang or allocate without
//! bound; where a parser has an inverse, what it accepts must survive the
//! round trip (a panic here is a finding). `fuzz/fuzz_targets/<name>.rs`
//! hands libFuzzer's input to the function of that name (listed in
//! [`TARGETS`]); `tests/corpus.rs` runs
//! every checked-in seed (`fuzz/corpus/<name>/`) through each on every
//! `make test`, so the bodies are built and exercised without a fuzzer.

use std::sync::OnceLock;

use note::{Checkpoint, KeyType, Note, Policy, ProofBundle, SignerKey, VerifierKey};

/// A target's body: arbitrary bytes in, a panic on a finding.
pub type Body = fn(&[u8]);

/// Every target: its name (the fuzz target's and the corpus directory's)
/// and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("request", request),
    ("strict_json", strict_json),
    ("note", note),
    ("checkpoint", checkpoint),
    ("cosigned_checkpoint", cosigned_checkpoint),
    ("tlog_proof", tlog_proof),
    ("tlog_policy", tlog_policy),
    ("add_checkpoint", add_checkpoint),
    ("tile_path", tile_path),
    ("entry_bundle", entry_bundle),
    ("receipt", receipt),
    ("log_entry", log_entry),
    ("policy_bundle", policy_bundle),
    ("caller", caller),
    ("listen_addr", listen_addr),
    ("config_env", config_env),
    ("vkey", vkey),
    ("rfc3339", rfc3339),
    ("pem_certs", pem_certs),
];

/// A fixed key pair (the Go sumdb note test vector's `PeterNeumann`) that
/// seeds are signed with, so signed seeds get past the signature check.
fn key() -> &'static SignerKey {
    static KEY: OnceLock<SignerKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SignerKey::parse(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        )
        .expect("the vector's key")
    })
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `POST /v1/decisions` bodies: an accepted request's canonical value
/// parses again to the same request.
pub fn request(data: &[u8]) {
    if let Ok(r) = protocol::DecisionRequest::parse(data) {
        let again = protocol::DecisionRequest::parse(r.to_value().to_string().as_bytes())
            .expect("an accepted request re-parses");
        assert_eq!(again, r);
        let _ = r.receipt_id("fuzz");
        let _ = protocol::digest_of(&r.to_value());
    }
}

/// Strict JSON: whatever it accepts, serde_json reads as the same value.
pub fn strict_json(data: &[u8]) {
    if let Ok(v) = protocol::strict::from_slice(data) {
        let loose: serde_json::Value = serde_json::from_slice(data).expect("strict ⊂ JSON");
        assert_eq!(v, loose);
        let _ = protocol::canonical(&v);
    }
}

/// Signed notes: parse, print and parse again to the same note; verifying
/// never panics.
pub fn note(data: &[u8]) {
    if let Ok(n) = Note::parse(data) {
        let again = Note::parse(n.to_text().as_bytes()).expect("a printed note re-parses");
        assert_eq!(again, n);
        let _ = n.verify(std::slice::from_ref(key().verifier()));
    }
}

/// Checkpoint bodies: print and parse again to the same checkpoint.
pub fn checkpoint(data: &[u8]) {
    if let Some(Ok(c)) = text(data).map(Checkpoint::parse) {
        assert_eq!(Checkpoint::parse(&c.to_text()).expect("re-parses"), c);
    }
}

/// A checkpoint with cosignature lines, checked against a tlog-policy
/// naming the fixed key as log and as one witness.
pub fn cosigned_checkpoint(data: &[u8]) {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let w = SignerKey::generate("fuzz.example/witness", KeyType::CosignatureV1)
            .expect("a witness key");
        let (k, w) = (key().verifier(), w.verifier());
        Policy::parse(&format!("log {k}\nwitness w {w}\nquorum w\n")).expect("policy")
    });
    let _ = policy.verify_checkpoint(data);
    let _ = Policy::for_log(key().verifier().clone()).verify_checkpoint(data);
}

/// tlog-proof bundles: print and parse again to the same bundle; checking
/// one against the fixed key never panics.
pub fn tlog_proof(data: &[u8]) {
    if let Some(Ok(b)) = text(data).map(ProofBundle::parse) {
        assert_eq!(ProofBundle::parse(&b.to_text()).expect("re-parses"), b);
        let _ = b.verify(
            &tlog::leaf_hash(b"fuzz"),
            &Policy::for_log(key().verifier().clone()),
        );
    }
}

/// tlog-policy files.
pub fn tlog_policy(data: &[u8]) {
    if let Some(Ok(p)) = text(data).map(Policy::parse) {
        let _ = p.verify_checkpoint(b"");
    }
}

/// C2SP tlog-witness `add-checkpoint` bodies and size answers.
pub fn add_checkpoint(data: &[u8]) {
    if let Ok(r) = note::witness::AddCheckpoint::parse(data) {
        assert!(r.proof.len() <= note::witness::MAX_PROOF_LINES);
    }
    if let Some(t) = text(data) {
        let _ = note::witness::parse_size(t);
    }
}

/// Tile paths: an accepted path is the tile's own path.
pub fn tile_path(data: &[u8]) {
    if let Some(Ok(t)) = text(data).map(tlog::Tile::parse_path) {
        assert_eq!(t.path(), text(data).expect("checked"));
    }
}

/// Entry bundles: what decodes encodes to the same bytes.
pub fn entry_bundle(data: &[u8]) {
    if let Ok(entries) = tlog::decode_entry_bundle(data) {
        assert_eq!(
            tlog::encode_entry_bundle(&entries).expect("decoded entries encode"),
            data
        );
    }
}

/// Receipts (signed notes of receipt bodies), as proofcheck and replay read them.
pub fn receipt(data: &[u8]) {
    let _ = protocol::parse_receipt(data);
    let _ = protocol::verify_receipt(data, key().verifier());
}

/// Log entries of either kind (receipt or governance), as an audit reads them.
pub fn log_entry(data: &[u8]) {
    let _ = protocol::parse_entry(data);
    let _ = protocol::parse_governance(data);
}

/// Policy bundles as `POST /v1/admin/policies` takes them (tar.gz with a
/// manifest, Rego or Cedar, data and entities JSON); one that loads is compiled.
pub fn policy_bundle(data: &[u8]) {
    if let Ok(b) = policy::Bundle::from_tar_gz(data, Some("data.fuzz.decision")) {
        let _ = b.version();
        let _ = policy::CompiledPolicy::compile(&b);
    }
}

/// `POST /v1/admin/callers` bodies, read and checked as the gate does.
pub fn caller(data: &[u8]) {
    let Ok(v) = protocol::strict::from_slice(data) else {
        return;
    };
    if let Ok(c) = serde_json::from_value::<gate::NewCaller>(v) {
        let _ = gate::callers::check_name(&c.name);
        for a in &c.actors {
            let _ = gate::callers::check_actor_pattern(a);
        }
    }
}

/// `listen` addresses: one that parses prints as itself and parses again.
pub fn listen_addr(data: &[u8]) {
    if let Some(Ok(a)) = text(data).map(str::parse::<gate::ListenAddr>) {
        assert_eq!(a.to_string().parse::<gate::ListenAddr>(), Ok(a));
    }
}

/// Environment overrides: the input is lines `NAME=value` for the
/// `TOLLGATE_*` variables; a configuration that loads is checked.
pub fn config_env(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let vars: Vec<(String, String)> = t
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if let Ok(c) = gate::Config::load(None, env) {
        let _ = c.check();
    }
}

/// Verifier and signer key strings: a parsed vkey prints in its canonical
/// form (the key hash in lowercase hex; like Go's note package, the parser
/// takes either case), which parses to the same key.
pub fn vkey(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(k) = VerifierKey::parse(t) {
        let printed = k.to_string();
        assert_eq!(VerifierKey::parse(&printed).expect("re-parses"), k);
        let parts: Vec<&str> = t.splitn(3, '+').collect();
        assert_eq!(
            printed,
            format!(
                "{}+{}+{}",
                parts[0],
                parts[1].to_ascii_lowercase(),
                parts[2]
            )
        );
    }
    let _ = SignerKey::parse(t);
}

/// RFC 3339 times as receipts carry them: a parsed time formats and parses
/// back to the same instant.
pub fn rfc3339(data: &[u8]) {
    if let Some(Ok(ns)) = text(data).map(protocol::parse_rfc3339_ns) {
        assert_eq!(
            protocol::parse_rfc3339_ns(&protocol::format_rfc3339_ns(ns)),
            Ok(ns)
        );
    }
}

/// PEM certificate files (TLS certificates and CA files).
pub fn pem_certs(data: &[u8]) {
    let _ = tls::certs_from_pem(data, std::path::Path::new("fuzz.pem"));
}
