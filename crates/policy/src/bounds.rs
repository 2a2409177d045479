//! What one Rego builtin call can cost, and the gate's heap limit.
//!
//! regorus checks its evaluation timer and its memory limit between units
//! of work, so a policy that grows a value step by step is stopped at either
//! limit; a single builtin call runs to its end first. So every builtin this
//! regorus compiles in is classified here (a test enumerates regorus's
//! table and fails on one that is not):
//!
//! - [`BOUNDED`]: one call's time and memory are at most about linear (n log n) in the
//!   in-memory size of its arguments. Arguments are values the evaluation
//!   already holds, under the limit; so one call cannot take the gate far
//!   past it, nor far past the time limit.
//! - [`GUARDED`]: builtins this crate replaces with extensions that refuse a
//!   call past a size bound before allocating (`numbers.range`, `concat`, …),
//!   or pins (`time.now_ns`).
//! - [`AMPLIFYING`]: everything else — a width or a count chosen by an
//!   argument (`sprintf("%0500000000d", …)`, `bits.lsh`), output quadratic in
//!   the arguments (`replace`, `trim`'s cutset), or a shared value expanded
//!   (`json.marshal` of `[x, x]` nested thirty times is 2^30 elements built
//!   from thirty). A bundle that refers to one is evaluated in a worker
//!   process the gate caps and stops (`gate::workers`); every other Rego
//!   bundle evaluates in the gate under [`set_heap_limit`].
//!
//! The heap limit is regorus's own (`allocator-memory-limits`): it counts the
//! bytes allocated through the global allocator, which must be
//! `regorus_mimalloc` ([`heap_accounted`] checks). It is one limit for the
//! whole process, not one per evaluation: while one evaluation holds the
//! heap past it, every evaluation that checks is SILENCE (fail closed).

use crate::contract::EVAL_BUILT_BYTES;

/// Builtins one call of which costs at most about linear (n log n) time and
/// memory in the size of its arguments.
pub const BOUNDED: &[&str] = &[
    "abs",
    "array.concat",
    "array.reverse",
    "array.slice",
    "base64.decode",
    "base64.encode",
    "base64.is_valid",
    "bits.and",
    "bits.negate",
    "bits.or",
    "bits.rsh",
    "bits.xor",
    "ceil",
    "contains",
    "count",
    "endswith",
    "floor",
    "glob.match",
    "glob.quote_meta",
    "hex.decode",
    "hex.encode",
    "indexof",
    "intersection",
    "is_array",
    "is_boolean",
    "is_null",
    "is_number",
    "is_object",
    "is_set",
    "is_string",
    "json.is_valid",
    "json.unmarshal",
    "lower",
    "max",
    "min",
    "object.filter",
    "object.get",
    "object.keys",
    "object.remove",
    "object.union",
    "object.union_n",
    "product",
    "regex.find_n",
    "regex.is_valid",
    "regex.match",
    "regex.split",
    "round",
    "semver.compare",
    "semver.is_valid",
    "sort",
    "split",
    "startswith",
    "strings.count",
    "strings.reverse",
    "substring",
    "sum",
    "time.add_date",
    "time.clock",
    "time.date",
    "time.diff",
    "time.format",
    "time.parse_duration_ns",
    "time.parse_ns",
    "time.parse_rfc3339_ns",
    "time.weekday",
    "to_number",
    "trace",
    "trim_prefix",
    "trim_space",
    "trim_suffix",
    "type_name",
    "union",
    "units.parse",
    "units.parse_bytes",
    "upper",
    "__builtin_sets.intersection",
    "__builtin_sets.union",
];

/// Builtins replaced by this crate's extensions: bounded before they
/// allocate (`numbers.range*`: [`crate::MAX_RANGE_ELEMENTS`]; `concat`:
/// [`EVAL_BUILT_BYTES`]) or pinned (`time.now_ns`: the bound decision time).
pub const GUARDED: &[&str] = &[
    "concat",
    "numbers.range",
    "numbers.range_step",
    "time.now_ns",
];

/// Builtins one call of which can cost more than linear time or memory in
/// its arguments (a size chosen by an argument, quadratic output, a shared
/// value expanded), and `print`, which formats its arguments like `sprintf`.
/// Those regorus 0.14 does not compile in with this workspace's features are
/// listed too, should a feature be turned on.
pub const AMPLIFYING: &[&str] = &[
    "bits.lsh",
    "format_int",
    "graph.reachable",
    "graph.reachable_paths",
    "indexof_n",
    "json.filter",
    "json.marshal",
    "json.marshal_with_options",
    "json.match_schema",
    "json.patch",
    "json.remove",
    "json.verify_schema",
    "net.cidr_contains",
    "net.cidr_expand",
    "net.cidr_is_valid",
    "object.subset",
    "print",
    "regex.find_all_string_submatch_n",
    "regex.globs_match",
    "regex.replace",
    "regex.template_match",
    "replace",
    "sprintf",
    "strings.any_prefix_match",
    "strings.any_suffix_match",
    "strings.replace_n",
    "trim",
    "trim_left",
    "trim_right",
    "walk",
    "yaml.is_valid",
    "yaml.marshal",
    "yaml.unmarshal",
];

/// The first reference in the parsed modules (regorus's syntax tree, as
/// JSON) to an [`AMPLIFYING`] builtin — called, or named in a `with` — as
/// "`name` (file line N)". Any reference counts, so no indirection hides a
/// call; a rule of the same name counts too (it is evaluated in a process,
/// which is safe).
pub(crate) fn first_amplifying(ast: &serde_json::Value) -> Option<String> {
    for module in ast.as_array().into_iter().flatten() {
        if let Some((line, name)) = find_reference(&module["ast"], 0) {
            let file = module["source"]["file"].as_str().unwrap_or("?");
            return Some(format!("{name} ({file} line {line})"));
        }
    }
    None
}

fn find_reference(node: &serde_json::Value, line: u64) -> Option<(u64, String)> {
    match node {
        serde_json::Value::Object(fields) => {
            let line = node["span"]["line"].as_u64().unwrap_or(line);
            for kind in ["Var", "RefDot", "RefBrack"] {
                if let Some(expr) = fields.get(kind) {
                    let line = expr["span"]["line"].as_u64().unwrap_or(line);
                    if let Some(name) = crate::rego::call_path(node) {
                        if AMPLIFYING.contains(&name.as_str()) {
                            return Some((line, name));
                        }
                    }
                }
            }
            fields.values().find_map(|v| find_reference(v, line))
        }
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_reference(v, line)),
        _ => None,
    }
}

/// `concat(delimiter, collection)` as regorus computes it, refused before
/// anything is built when the result would pass [`EVAL_BUILT_BYTES`]
/// (the delimiter repeated between n strings is n × its length).
pub(crate) fn bounded_concat(
    delimiter: &regorus::Value,
    collection: &regorus::Value,
) -> anyhow::Result<regorus::Value> {
    use regorus::Value;
    let Value::String(delimiter) = delimiter else {
        anyhow::bail!("concat: the delimiter {delimiter} is not a string");
    };
    let items: Vec<&Value> = match collection {
        Value::Array(items) => items.iter().collect(),
        Value::Set(items) => items.iter().collect(),
        other => anyhow::bail!("concat: {other} is not an array or a set of strings"),
    };
    let mut parts = Vec::with_capacity(items.len());
    let mut bytes = delimiter
        .len()
        .saturating_mul(items.len().saturating_sub(1));
    for item in items {
        let Value::String(s) = item else {
            anyhow::bail!("concat: element {item} is not a string");
        };
        bytes = bytes.saturating_add(s.len());
        parts.push(s.as_ref());
    }
    anyhow::ensure!(
        bytes <= EVAL_BUILT_BYTES,
        "concat: {bytes} bytes, more than the {EVAL_BUILT_BYTES} one call may build"
    );
    Ok(Value::from(parts.join(delimiter)))
}

/// The bytes allocated through the global allocator and not yet freed, as
/// regorus's limit counts them (each thread publishes its count once it has
/// changed by 1 MiB, so this lags by up to that per thread); `None` when the
/// global allocator does not count (it is not `regorus_mimalloc`).
pub fn heap_bytes() -> Option<u64> {
    heap_accounted().then(|| regorus_mimalloc::global_allocation_stats_snapshot().allocated)
}

/// Whether the global allocator counts what it allocates: an allocation of
/// 4 MiB must show in the published total.
pub fn heap_accounted() -> bool {
    static ACCOUNTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ACCOUNTED.get_or_init(|| {
        // This thread's own count: other threads' frees do not move it.
        let before = regorus_mimalloc::current_thread_live_bytes();
        let block = std::hint::black_box(vec![1u8; 4 << 20]);
        let counted = regorus_mimalloc::current_thread_live_bytes() - before >= 4 << 20;
        drop(block);
        counted
    })
}

/// Stops every Rego evaluation in this process at its next check once the
/// heap ([`heap_bytes`]) passes the limit (`None`: no limit). The evaluation
/// is SILENCE, naming the heap and the limit.
///
/// `bytes` is the limit for the heap as it is now, the policies compiled so
/// far included. From then on the limit follows the compiled policies: a
/// policy compiled later raises it by the heap its compilation kept (its
/// modules, its data), and lowers it by as much once dropped, so a policy
/// with large data activated later does not eat the room the evaluations
/// were given, and a policy replaced gives its room back.
pub fn set_heap_limit(bytes: Option<u64>) {
    let mut limit = HEAP_LIMIT.lock().expect("heap limit lock");
    limit.base = bytes.map(|b| b.saturating_sub(limit.policies));
    limit.apply();
}

/// The heap limit's two parts: the base [`set_heap_limit`] set, and the heap
/// the compiled policies alive now hold.
struct HeapLimit {
    base: Option<u64>,
    policies: u64,
}

static HEAP_LIMIT: std::sync::Mutex<HeapLimit> = std::sync::Mutex::new(HeapLimit {
    base: None,
    policies: 0,
});

impl HeapLimit {
    fn apply(&self) {
        regorus::set_global_memory_limit(self.base.map(|b| b.saturating_add(self.policies)));
    }
}

/// The heap regorus may take, at most, to compile a bundle, per byte of the
/// bundle: its text, parsed, then converted to regorus's values (measured:
/// a 13 MB `data.json` of short strings peaks at about 19 times its size and
/// keeps about 6.5 times; `tests/heap_limit.rs` prints both).
pub const COMPILE_ROOM_PER_BUNDLE_BYTE: u64 = 32;

/// The heap one compiled policy holds, counted into the heap limit while
/// the policy lives (see [`set_heap_limit`]).
#[derive(Debug)]
pub(crate) struct HeapShare(u64);

impl HeapShare {
    /// Runs `compile` of a bundle of `bundle_bytes` and counts the heap it
    /// kept: what the calling thread allocated and did not free meanwhile
    /// (0 when the allocator does not count). regorus checks the limit
    /// while it loads a bundle's data too, so the limit is raised by
    /// [`COMPILE_ROOM_PER_BUNDLE_BYTE`] × `bundle_bytes` while it compiles
    /// (at most 512 MiB, for the largest bundle), then by what it kept.
    pub(crate) fn measure<T>(bundle_bytes: u64, compile: impl FnOnce() -> T) -> (T, HeapShare) {
        if !heap_accounted() {
            return (compile(), HeapShare(0));
        }
        let room = HeapShare::counted(bundle_bytes.saturating_mul(COMPILE_ROOM_PER_BUNDLE_BYTE));
        let before = regorus_mimalloc::current_thread_live_bytes();
        let compiled = compile();
        let kept = regorus_mimalloc::current_thread_live_bytes().saturating_sub(before);
        let share = HeapShare::counted(u64::try_from(kept).unwrap_or(0));
        drop(room);
        (compiled, share)
    }

    /// `bytes` counted into the limit until dropped.
    fn counted(bytes: u64) -> HeapShare {
        let mut limit = HEAP_LIMIT.lock().expect("heap limit lock");
        limit.policies = limit.policies.saturating_add(bytes);
        limit.apply();
        HeapShare(bytes)
    }

    /// The bytes counted.
    pub(crate) fn bytes(&self) -> u64 {
        self.0
    }
}

impl Drop for HeapShare {
    fn drop(&mut self) {
        let mut limit = HEAP_LIMIT.lock().expect("heap limit lock");
        limit.policies = limit.policies.saturating_sub(self.0);
        limit.apply();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every builtin this regorus compiles in is classified exactly once, so
    /// a new regorus (or a feature turned on) with a builtin nobody has
    /// looked at fails here, not in production.
    #[test]
    fn every_builtin_regorus_compiles_in_is_classified() {
        let lists = [BOUNDED, GUARDED, AMPLIFYING];
        let mut unclassified = Vec::new();
        for name in regorus::unstable::BUILTINS.keys() {
            let found = lists.iter().filter(|l| l.contains(name)).count()
                + usize::from(crate::rego::is_refused(name));
            match found {
                0 => unclassified.push(*name),
                1 => {}
                _ => panic!("{name} is classified more than once"),
            }
        }
        assert!(
            unclassified.is_empty(),
            "classify these regorus builtins in bounds.rs: {unclassified:?}"
        );
        // Nothing listed as bounded or guarded that regorus does not have:
        // a typo would leave the builtin unclassified.
        let unknown: Vec<_> = BOUNDED
            .iter()
            .chain(GUARDED)
            .filter(|name| !regorus::unstable::BUILTINS.contains_key(*name))
            .collect();
        assert!(unknown.is_empty(), "not regorus builtins: {unknown:?}");
    }

    /// The guarded `concat` is regorus's below the bound and fails past it.
    #[test]
    fn concat_is_regorus_concat_up_to_the_bound() {
        for call in [
            r#"concat(", ", ["a", "b", "c"])"#,
            r#"concat("", [])"#,
            r#"concat("-", {"b", "a"})"#,
            r#"concat("", ["x"])"#,
        ] {
            let (ours, theirs) = crate::rego::ours_and_regorus(call);
            assert_eq!(ours.unwrap(), theirs.unwrap(), "{call}");
        }
        for call in [
            r#"concat(", ", ["a", 1])"#,
            r#"concat(1, ["a"])"#,
            r#"concat(",", "ab")"#,
        ] {
            let (ours, theirs) = crate::rego::ours_and_regorus(call);
            assert!(ours.is_err() && theirs.is_err(), "{call}");
        }
        // A 64 KiB delimiter between 4,096 strings is 256 MiB: refused.
        let mut ours = crate::rego::new_engine().unwrap();
        ours.add_policy(
            "p.rego".into(),
            "package t\nd := concat(\"\", [\"x\" | some _ in numbers.range(1, 65536)])\nx := concat(d, [\"\" | some _ in numbers.range(1, 4096)])\n".into(),
        )
        .unwrap();
        let err = ours.eval_rule("data.t.x".into()).unwrap_err().to_string();
        assert!(err.contains("one call may build"), "{err}");
    }

    fn amplifying(src: &str) -> Option<String> {
        let mut engine = crate::rego::new_engine().unwrap();
        engine.add_policy("p.rego".into(), src.into()).unwrap();
        let ast: serde_json::Value =
            serde_json::from_str(&engine.get_ast_as_json().unwrap()).unwrap();
        first_amplifying(&ast)
    }

    /// A reference to an amplifying builtin is found wherever it is: called
    /// directly, dotted or bracketed, in a `with`, in `print`; bounded and
    /// guarded ones, strings and comments are not references.
    #[test]
    fn references_to_amplifying_builtins_are_found() {
        let found = |src: &str| amplifying(&format!("package t\nimport rego.v1\n{src}\n"));
        assert_eq!(
            found("x := sprintf(\"%d\", [1])").as_deref(),
            Some("sprintf (p.rego line 3)")
        );
        assert!(found("x := json[\"marshal\"]([1])")
            .unwrap()
            .starts_with("json.marshal"));
        assert!(found("x := 1\n\ny if {\n  print(x)\n}")
            .unwrap()
            .starts_with("print (p.rego line 6)"));
        assert!(found("f(a) := a\nx if {\n  f(1) with f as walk\n}")
            .unwrap()
            .starts_with("walk"));
        assert_eq!(found("x := count([1]) + object.get({}, \"a\", 2)"), None);
        assert_eq!(found("x := concat(\",\", [\"a\"])"), None);
        assert_eq!(found("# sprintf(\"%d\", [1])\nx := \"sprintf\""), None);
    }
}
