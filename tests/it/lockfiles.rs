//! The fuzz crate's lock file (`fuzz/Cargo.lock`, its own workspace) stays on the main lock's
//! versions: a crate both use is fuzzed at the version the server ships with.

use std::{collections::BTreeMap, path::Path};

/// Package name → versions, from a Cargo.lock's text.
fn versions(lock: &str) -> BTreeMap<String, Vec<String>> {
    let doc: toml::Table = lock.parse().expect("a Cargo.lock is TOML");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in doc["package"].as_array().expect("[[package]] entries") {
        let field = |k: &str| {
            p[k].as_str()
                .expect("name and version are strings")
                .to_owned()
        };
        out.entry(field("name")).or_default().push(field("version"));
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// The fuzz lock's versions of packages the main lock holds at other versions only (the fuzz
/// crate may need fewer of a package's versions: the main lock also holds dev-dependencies).
fn drift(main: &str, fuzz: &str) -> Vec<String> {
    let (main, fuzz) = (versions(main), versions(fuzz));
    fuzz.iter()
        .filter_map(|(name, fv)| {
            let mv = main.get(name)?;
            let other: Vec<_> = fv.iter().filter(|v| !mv.contains(v)).collect();
            (!other.is_empty()).then(|| format!("{name}: main {mv:?}, fuzz {other:?}"))
        })
        .collect()
}

#[test]
fn fuzz_lock_keeps_the_main_locks_versions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("lock file readable");
    let (main, fuzz) = (read("Cargo.lock"), read("fuzz/Cargo.lock"));
    assert!(
        versions(&fuzz).contains_key("libfuzzer-sys"),
        "fuzz/Cargo.lock is the fuzz crate's"
    );
    let drift = drift(&main, &fuzz);
    assert!(
        drift.is_empty(),
        "fuzz/Cargo.lock has other versions than Cargo.lock: {drift:#?}\nRemake it: \
         cp Cargo.lock fuzz/Cargo.lock && (cd fuzz && cargo metadata --format-version 1 >/dev/null)"
    );
}

#[test]
fn lock_drift_is_seen() {
    let lock = |v: &str| format!("version = 4\n[[package]]\nname = \"tokio\"\nversion = \"{v}\"\n");
    assert!(drift(&lock("1.54.1"), &lock("1.54.1")).is_empty());
    assert_eq!(drift(&lock("1.54.1"), &lock("1.50.0")).len(), 1);
    let two = format!(
        "{}{}",
        lock("1.54.1"),
        lock("1.50.0").replace("version = 4\n", "")
    );
    assert!(
        drift(&two, &lock("1.50.0")).is_empty(),
        "a subset of main's versions"
    );
    assert_eq!(drift(&lock("1.50.0"), &two).len(), 1);
}
