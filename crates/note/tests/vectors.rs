//! Note vectors from golang.org/x/mod sumdb/note and C2SP signed-note, and a
//! real sum.golang.org checkpoint (origins in tests/vectors/README.md).

use note::{Checkpoint, KeyType, Note, SignerKey, VerifierKey};

fn vectors() -> serde_json::Value {
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../tests/vectors/go-sumdb-note/note_vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a str {
    path.iter().fold(v, |v, p| &v[*p]).as_str().unwrap()
}

#[test]
fn peter_neumann_signature_is_reproduced_byte_for_byte() {
    let v = vectors();
    let skey = SignerKey::parse(s(&v, &["go_note_peterneumann", "skey"])).unwrap();
    assert_eq!(
        skey.verifier().to_string(),
        s(&v, &["go_note_peterneumann", "vkey"])
    );
    assert_eq!(skey.to_skey(), s(&v, &["go_note_peterneumann", "skey"]));
    let mut n = Note::new(s(&v, &["go_note_peterneumann", "text"])).unwrap();
    n.sign(&skey).unwrap();
    assert_eq!(n.to_text(), s(&v, &["go_note_peterneumann", "signed_note"]));
    let vkey = VerifierKey::parse(s(&v, &["go_note_peterneumann", "vkey"])).unwrap();
    let parsed = Note::parse(n.to_text().as_bytes()).unwrap();
    assert_eq!(parsed.verify(&[vkey]).unwrap().len(), 1);
}

#[test]
fn unknown_key_signature_is_ignored() {
    let v = vectors();
    let signed = format!(
        "{}{}",
        s(&v, &["go_note_peterneumann", "signed_note"]),
        s(&v, &["go_note_enochroot", "sig_line"])
    );
    let note = Note::parse(signed.as_bytes()).unwrap();
    assert_eq!(note.signatures().len(), 2);
    let peter = VerifierKey::parse(s(&v, &["go_note_peterneumann", "vkey"])).unwrap();
    let enoch = VerifierKey::parse(s(&v, &["go_note_enochroot", "vkey"])).unwrap();
    let verified = note.verify(std::slice::from_ref(&peter)).unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0].key, &peter);
    // Enoch's signature is genuine too: with both keys known, both verify.
    assert_eq!(note.verify(&[peter.clone(), enoch]).unwrap().len(), 2);
    // A key sharing the name but not the ID is unknown: ignored, so unverified.
    let impostor = SignerKey::generate("PeterNeumann", KeyType::Ed25519).unwrap();
    assert!(note
        .verify(std::slice::from_ref(impostor.verifier()))
        .is_err());
}

#[test]
fn c2sp_signed_note_example() {
    let v = vectors();
    let vkey = VerifierKey::parse(s(&v, &["c2sp_signed_note_example", "vkey"])).unwrap();
    let signed = s(&v, &["c2sp_signed_note_example", "signed_note"]);
    let note = Note::parse(signed.as_bytes()).unwrap();
    note.verify(std::slice::from_ref(&vkey)).unwrap();
    assert_eq!(note.text(), "This is an example message.\n");
    assert_eq!(note.to_text(), signed);
    let tampered = signed.replace("example message", "exemplary message");
    assert!(Note::parse(tampered.as_bytes())
        .unwrap()
        .verify(&[vkey])
        .is_err());
}

#[test]
fn real_sum_golang_org_checkpoint() {
    let v = vectors();
    let vkey = VerifierKey::parse(s(&v, &["real_sum_golang_org_checkpoint", "vkey"])).unwrap();
    let signed = s(&v, &["real_sum_golang_org_checkpoint", "checkpoint"]);
    let note = Note::parse(signed.as_bytes()).unwrap();
    note.verify(&[vkey]).unwrap();
    let cp = Checkpoint::parse(note.text()).unwrap();
    assert_eq!(cp.origin, "go.sum database tree");
    assert_eq!(cp.size, 35_225_469);
    assert_eq!(cp.to_text(), note.text());
}

#[test]
fn go_tlog_tree_note_golden() {
    let v = vectors();
    let text = s(&v, &["go_tlog_tree_note_golden"]);
    let cp = Checkpoint::parse(text).unwrap();
    assert_eq!(cp.size, 123_456_789_012);
    assert_eq!(cp.to_text(), text);
}

mod fuzz {
    use note::{Checkpoint, Note, ProofBundle};
    use proptest::prelude::*;

    proptest! {
        /// Parsers never panic on arbitrary input, and what parses re-renders identically.
        #[test]
        fn parsers_are_total_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(n) = Note::parse(&bytes) {
                let text = n.to_text();
                prop_assert_eq!(text.as_bytes(), &bytes[..]);
            }
            if let Ok(s) = std::str::from_utf8(&bytes) {
                if let Ok(c) = Checkpoint::parse(s) {
                    prop_assert_eq!(c.to_text(), s);
                }
                let _ = ProofBundle::parse(s);
            }
        }

        #[test]
        fn notes_from_structured_input_round_trip(
            lines in proptest::collection::vec("[a-z0-9 ]{0,20}", 1..5),
            sigs in proptest::collection::vec(("[a-z.]{1,10}", proptest::collection::vec(any::<u8>(), 5..80)), 1..20),
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let mut note = Note::new(text).unwrap();
            for (name, raw) in sigs {
                note.add_signature(note::NoteSignature {
                    name,
                    key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                    signature: raw[4..].to_vec(),
                }).unwrap();
            }
            let parsed = Note::parse(note.to_text().as_bytes()).unwrap();
            prop_assert_eq!(parsed, note);
        }
    }
}
