//! Every checked-in seed of every fuzz target runs through the target's body
//! (no fuzzer needed): the bodies build and keep their properties on `make
//! test`, and each target has seeds.

use std::path::Path;

#[test]
fn every_seed_of_every_target_passes() {
    let corpus = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../fuzz/corpus");
    for (name, body) in fuzzing::TARGETS {
        let dir = corpus.join(name);
        let seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!seeds.is_empty(), "{name} has no seeds");
        for seed in seeds {
            let data = std::fs::read(&seed).unwrap();
            body(&data);
        }
    }
}
