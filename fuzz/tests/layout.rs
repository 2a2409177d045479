//! The fuzz targets, their seeds and the bodies agree: every body in
//! `fuzzing::TARGETS` has a target here that is built (so `make test` builds
//! every target) and a seed corpus, and nothing else is here.

use std::collections::BTreeSet;
use std::path::Path;

fn names_in(dir: &Path, strip: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(strip).unwrap_or(&name).to_string()
        })
        .collect()
}

#[test]
fn every_body_has_a_built_target_and_seeds() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bodies: BTreeSet<String> = fuzzing::TARGETS
        .iter()
        .map(|(n, _)| (*n).to_string())
        .collect();
    assert_eq!(names_in(&here.join("fuzz_targets"), ".rs"), bodies);
    assert_eq!(names_in(&here.join("corpus"), ""), bodies);
    // Built beside this test (target/<profile>/), as cargo builds a
    // package's binaries for its integration tests.
    let exe = std::env::current_exe().unwrap();
    let built = exe.parent().and_then(Path::parent).unwrap();
    for name in &bodies {
        assert!(built.join(name).exists(), "fuzz target {name} is not built");
    }
}
