//! `make demo` runs this binary; the test runs it too, so the demo cannot
//! quietly stop doing what it claims.

#[test]
fn the_demo_does_what_it_claims() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-demo"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("every step did what it claims"), "{text}");
    assert!(!text.contains(" FAIL "), "{text}");
}
