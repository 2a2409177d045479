//! The docs name what the code has: every command of every binary a test
//! can run (from its own `--help`) in ARCHITECTURE.md, in the one form
//! `bin cmd1|cmd2|…` (so a new or renamed command fails here until the map
//! says so), and every table the PostgreSQL store creates.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn architecture() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap()
}

/// The subcommands `--help` lists (clap's "Commands:" block), `help` left out.
fn commands(bin: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new(bin).args(args).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_of_every_binary_is_in_the_architecture_map() {
    let doc = architecture();
    let tollgate = Path::new(env!("CARGO_BIN_EXE_tollgate")).to_path_buf();
    let mut lists = vec![("tollgate".to_string(), commands(&tollgate, &[]))];
    for group in ["policy", "surface", "caller", "approvals", "mcp", "log"] {
        lists.push((format!("tollgate {group}"), commands(&tollgate, &[group])));
    }
    for bin in ["proofcheck", "witness"] {
        lists.push((bin.to_string(), commands(&testkit::bin(bin), &[])));
    }
    for (name, cmds) in lists {
        assert!(!cmds.is_empty(), "{name} lists no commands");
        let want = format!("`{name} {}`", cmds.join("|"));
        // The map may wrap the span at a space.
        let flat = doc.replace('\n', " ");
        assert!(flat.contains(&want), "ARCHITECTURE.md does not say {want}");
    }
}

#[test]
fn every_postgres_table_is_in_the_docs() {
    let pg = std::fs::read_to_string(root().join("crates/ledger/src/pg.rs")).unwrap();
    let tables: Vec<&str> = pg
        .split("CREATE TABLE IF NOT EXISTS ")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
        })
        .collect();
    assert!(tables.len() >= 8, "{tables:?}");
    let doc = architecture();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for t in &tables {
        assert!(
            doc.contains(&format!("`{t}`")),
            "ARCHITECTURE.md does not name {t}"
        );
    }
    let count = [
        "", "", "", "", "", "", "", "", "eight", "nine", "ten", "eleven", "twelve",
    ];
    let n = count.get(tables.len()).copied().unwrap_or("many");
    assert!(
        readme.contains(&format!("{n} `tollgate_*` tables")),
        "README.md does not say the store creates {n} `tollgate_*` tables"
    );
}
