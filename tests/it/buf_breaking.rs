//! `buf breaking` against the committed `proto-baseline/` bites: a copy of `proto/` with one
//! field renumbered fails it, naming the field, and the unchanged copy passes (so the baseline
//! is in step with `proto/`). The copy runs under the repository's own `buf.yaml`, exactly as
//! `scripts/test.sh` runs the check.
//!
//! buf must be installed: `scripts/test.sh` puts it in `.tools/bin` (npm `@bufbuild/buf`).
//! Without it the test fails, saying how to get it; it never skips.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// buf: the first on PATH, else `.tools/bin/buf` as `scripts/test.sh` links it.
fn buf() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([repo_root().join(".tools").join("bin")])
        .map(|dir| dir.join("buf"))
        .find(|buf| buf.is_file())
        .unwrap_or_else(|| {
            panic!(
                "buf not found on PATH nor at {}: run ./scripts/test.sh (it installs buf \
                 there), or put buf 1.75+ on PATH",
                repo_root().join(".tools/bin/buf").display()
            )
        })
}

/// Copies `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A workspace like the repository's (its `buf.yaml` and a copy of `proto/`), with `edit`
/// applied to `patterns.proto`, checked by `buf breaking` against the committed baseline.
fn breaking(edit: impl FnOnce(String) -> String) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(repo_root().join("buf.yaml"), dir.path().join("buf.yaml")).expect("buf.yaml");
    copy_dir(&repo_root().join("proto"), &dir.path().join("proto"));
    let file = dir.path().join("proto/hotplane/v1/patterns.proto");
    let text = std::fs::read_to_string(&file).expect("patterns.proto");
    std::fs::write(&file, edit(text)).expect("write");
    Command::new(buf())
        .args(["breaking", "--against"])
        .arg(repo_root().join("proto-baseline"))
        .current_dir(dir.path())
        .output()
        .expect("buf runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn buf_breaking_refuses_a_renumbered_field_and_passes_the_unchanged_api() {
    let same = breaking(|t| t);
    assert!(
        same.status.success(),
        "proto/ breaks proto-baseline/ as it is: {}",
        text(&same)
    );

    const FIELD: &str = "  // Category of the pattern.\n  string category = 3;";
    let renumbered = breaking(|t| {
        assert_eq!(t.matches(FIELD).count(), 1, "MatchedPattern.category moved");
        t.replace(
            FIELD,
            "  // Category of the pattern.\n  string category = 30;",
        )
    });
    let said = text(&renumbered);
    assert!(!renumbered.status.success(), "renumbering passed: {said}");
    assert!(
        said.contains(r#"field "3" with name "category" on message "MatchedPattern""#),
        "buf named something else: {said}"
    );
}
