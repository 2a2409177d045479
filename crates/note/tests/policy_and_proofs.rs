//! tlog-policy quorums and tlog-proof bundles, end to end with real keys.

use note::{sign_checkpoint, Checkpoint, Error, KeyType, Policy, ProofBundle, SignerKey};
use tlog::{append_leaves, leaf_hash, prove_inclusion, tree_hash, Hash};

struct Fixture {
    log: SignerKey,
    witnesses: Vec<SignerKey>,
    leaves: Vec<Hash>,
    stored: Vec<Hash>,
}

fn fixture() -> Fixture {
    let log = SignerKey::generate("example.com/log", KeyType::Ed25519).unwrap();
    let witnesses = (0..4)
        .map(|i| {
            SignerKey::generate(&format!("witness{i}.example"), KeyType::CosignatureV1).unwrap()
        })
        .collect();
    let leaves: Vec<Hash> = (0..1000u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let stored = append_leaves(0, &leaves, &Vec::new()).unwrap();
    Fixture {
        log,
        witnesses,
        leaves,
        stored,
    }
}

impl Fixture {
    /// X1, X2 need 2 of 2... a two-level policy as in the spec's example.
    fn policy(&self) -> Policy {
        let w = &self.witnesses;
        Policy::parse(&format!(
            "# two organisations\nlog {}\n\n\twitness X1 {}\nwitness X2 {} https://x2.example/\n\
             group X 2 X1 X2\nwitness Y1 {}\nwitness Y2 {}\ngroup Y any Y1 Y2\ngroup XY all X Y\nquorum XY\n",
            self.log.verifier(),
            w[0].verifier(),
            w[1].verifier(),
            w[2].verifier(),
            w[3].verifier()
        ))
        .unwrap()
    }

    fn bundle(&self, index: u64, size: u64, cosigners: &[usize]) -> ProofBundle {
        let cp = Checkpoint::new(
            "example.com/log",
            size,
            tree_hash(size, &self.stored).unwrap(),
        );
        let mut note = sign_checkpoint(&cp, &self.log).unwrap();
        for &i in cosigners {
            note.add_cosignature(&self.witnesses[i], 1_700_000_000 + i as u64)
                .unwrap();
        }
        ProofBundle {
            extra: Some(b"receipt".to_vec()),
            index,
            proof: prove_inclusion(index, size, &self.stored).unwrap(),
            checkpoint: note.to_text(),
        }
    }
}

#[test]
fn quorum_is_evaluated_through_groups() {
    let f = fixture();
    let p = f.policy();
    let leaf = f.leaves[17];
    for (cosigners, ok) in [
        (vec![0, 1, 2], true),
        (vec![0, 1, 3], true),
        (vec![0, 1, 2, 3], true),
        (vec![0, 1], false),
        (vec![0, 2, 3], false),
        (vec![], false),
    ] {
        let b = ProofBundle::parse(&f.bundle(17, 500, &cosigners).to_text()).unwrap();
        let got = b.verify(&leaf, &p);
        assert_eq!(got.is_ok(), ok, "{cosigners:?}: {got:?}");
        if !ok {
            assert!(matches!(got, Err(Error::QuorumNotMet(_))));
        }
    }
    // Without witnesses a log-only policy is enough.
    let b = f.bundle(17, 500, &[]);
    assert_eq!(
        b.verify(&leaf, &Policy::for_log(f.log.verifier().clone()))
            .unwrap()
            .size,
        500
    );
}

#[test]
fn bundles_round_trip_and_tampering_fails() {
    let f = fixture();
    let p = Policy::for_log(f.log.verifier().clone());
    let b = f.bundle(999, 1000, &[0]);
    let text = b.to_text();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra cmVjZWlwdA==\nindex 999\n"));
    let parsed = ProofBundle::parse(&text).unwrap();
    assert_eq!(parsed, b);
    parsed.verify(&f.leaves[999], &p).unwrap();
    // Wrong leaf, wrong index, a flipped proof hash, a forged checkpoint.
    assert!(parsed.verify(&f.leaves[998], &p).is_err());
    let mut other = parsed.clone();
    other.index = 998;
    assert!(other.verify(&f.leaves[999], &p).is_err());
    let mut other = parsed.clone();
    other.proof[2].0[5] ^= 4;
    assert!(other.verify(&f.leaves[999], &p).is_err());
    let forged = text.replace("\n1000\n", "\n1001\n");
    assert!(ProofBundle::parse(&forged)
        .unwrap()
        .verify(&f.leaves[999], &p)
        .is_err());
    // Another log's key is not trusted.
    let stranger = SignerKey::generate("example.com/log", KeyType::Ed25519).unwrap();
    assert!(parsed
        .verify(
            &f.leaves[999],
            &Policy::for_log(stranger.verifier().clone())
        )
        .is_err());
    // Malformed bundles.
    for bad in [
        text.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
        text.replacen("index 999", "index 0999", 1),
        text.replacen("index 999", "index", 1),
        text.replacen("extra cmVjZWlwdA==\n", "extra !!\n", 1),
        text.replacen("\n\n", "\n", 1),
        text.replacen("index 999\n", "index 999\nAAAA\n", 1),
    ] {
        assert!(ProofBundle::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn malformed_policies_are_rejected_with_the_line() {
    let f = fixture();
    let log = f.log.verifier().to_string();
    let w0 = f.witnesses[0].verifier().to_string();
    let w1 = f.witnesses[1].verifier().to_string();
    let cases = [
        (format!("log {log}\n"), 0),
        (format!("log {log}\nquorum W\n"), 2),
        (
            format!("log {log}\nwitness A {w0}\nquorum A\nquorum A\n"),
            4,
        ),
        (format!("log {log}\nlog {log}\nquorum none\n"), 2),
        (format!("log {w0}\nquorum none\n"), 1),
        (format!("witness A {log}\nquorum none\n"), 1),
        (format!("witness A {w0}\nwitness A {w1}\nquorum none\n"), 2),
        (format!("witness A {w0}\nwitness B {w0}\nquorum none\n"), 2),
        (format!("witness A {w0}\ngroup G 2 A\nquorum G\n"), 2),
        (format!("witness A {w0}\ngroup G 0 A\nquorum G\n"), 2),
        (format!("witness A {w0}\ngroup G any A A\nquorum G\n"), 2),
        (format!("witness A {w0}\ngroup G any B\nquorum G\n"), 2),
        (format!("witness A {w0}\ngroup G any\nquorum G\n"), 2),
        (format!("witness none {w0}\nquorum none\n"), 1),
        (format!("witness A {w0}\ngroup G any none\nquorum G\n"), 2),
        ("frobnicate\nquorum none\n".to_string(), 1),
        (format!("log {log}\r\nquorum none\n"), 1),
    ];
    for (text, line) in cases {
        match Policy::parse(&text) {
            Err(Error::MalformedPolicy { line: got, .. }) => assert_eq!(got, line, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    // Comments, blank lines, tabs and trailing whitespace are fine.
    Policy::parse(&format!(
        "  # c\n\nlog\t{log}  \nwitness A {w0}\ngroup G all A\nquorum G\n"
    ))
    .unwrap();
}
