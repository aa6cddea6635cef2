//! The documentation checks itself: every relative link in README.md, BENCHMARKS.md and
//! docs/*.md reaches a file that exists and, with an `#anchor`, a heading of that file (or an
//! explicit `<a id="…">`); every docs/*.md is linked from README.md; and the flag table in
//! docs/configuration.md is the one `hotplane --help` describes, rendered here from the clap
//! definitions so that it cannot drift from them.
//!
//! The table lists the top-level (global) settings of `hotplane::config::Cli` only. A
//! subcommand's own flags are documented with that subcommand, not in this table.
//!
//! To regenerate the table after changing a flag: `HOTPLANE_BLESS=1 cargo nextest run --locked
//! -E 'test(docs_flag_table)'`, then review and commit the diff of docs/configuration.md.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use clap::CommandFactory;
use hotplane::config::Cli;

/// Where the generated flag table starts and ends in docs/configuration.md.
const FLAGS_BEGIN: &str = "<!-- flags:begin -->";
const FLAGS_END: &str = "<!-- flags:end -->";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md, BENCHMARKS.md and every docs/*.md.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("BENCHMARKS.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text outside fenced code blocks (links and headings in code are examples, not links).
fn prose(text: &str) -> Vec<&str> {
    let mut in_fence = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                return false;
            }
            !in_fence
        })
        .collect()
}

/// The targets of the inline Markdown links `[text](target)` in `text`, outside code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// GitHub's anchor for a heading: lower case, spaces to '-', punctuation other than '-' and
/// '_' removed.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor a Markdown file defines: its headings' slugs (a repeated heading gets `-1`,
/// `-2`, … as on GitHub) and explicit `<a id="…">` anchors.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let base = slug(&line[hashes..]);
            let n = seen.entry(base.clone()).or_insert(0);
            found.insert(if *n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            });
            *n += 1;
        }
        let mut rest = line;
        while let Some(at) = rest.find("<a id=\"") {
            let after = &rest[at + "<a id=\"".len()..];
            let Some(end) = after.find('"') else { break };
            found.insert(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    found
}

/// What is wrong with the relative links of `file` (`text` its contents), one line each.
fn broken_links(file: &Path, text: &str) -> Vec<String> {
    let dir = file.parent().expect("a file has a directory");
    let mut broken = Vec::new();
    for target in link_targets(text) {
        if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let linked = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !linked.exists() {
            broken.push(format!(
                "[…]({target}): {} does not exist",
                linked.display()
            ));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if linked.extension().is_none_or(|ext| ext != "md") {
            continue;
        }
        if !anchors(&read(&linked)).contains(anchor) {
            broken.push(format!(
                "[…]({target}): {} has no heading whose anchor is #{anchor}",
                linked.display()
            ));
        }
    }
    broken
}

#[test]
fn docs_relative_links_reach_existing_files_and_headings() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        for problem in broken_links(&file, &text) {
            broken.push(format!("{}: {problem}", file.display()));
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn docs_every_page_is_linked_from_the_readme() {
    let readme = read(&root().join("README.md"));
    let linked: BTreeSet<PathBuf> = link_targets(&readme)
        .iter()
        .map(|target| target.split('#').next().unwrap_or_default())
        .filter(|path| !path.is_empty())
        .map(|path| root().join(path))
        .collect();
    let orphans: Vec<String> = markdown_files()
        .into_iter()
        .filter(|file| file.parent() == Some(&root().join("docs")))
        .filter(|file| !linked.contains(file))
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        orphans.is_empty(),
        "docs pages README.md does not link to: {orphans:?}"
    );
}

#[test]
fn docs_link_checker_catches_a_broken_link() {
    let readme = root().join("README.md");
    let text = "[ok](docs/configuration.md#config-file) [gone](docs/nowhere.md) \
                [bad anchor](docs/configuration.md#no-such-heading) [web](https://example.com)";
    let broken = broken_links(&readme, text);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].contains("nowhere.md"), "{broken:?}");
    assert!(broken[1].contains("#no-such-heading"), "{broken:?}");
    assert_eq!(
        slug("Rollback, and moving to another `database`"),
        "rollback-and-moving-to-another-database"
    );
}

/// A table cell: one line, with the characters that would end the cell escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The flag table, from the clap definitions of `Cli`'s top-level settings (hidden ones left
/// out, as `--help` leaves them out): long flag, environment variable, default ("unset" when
/// there is none) and help text, with the possible values `--help` lists.
fn flag_table() -> String {
    let command = Cli::command();
    let mut table = String::from("| flag | env | default | meaning |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        if arg.is_hide_set() {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        let env = arg
            .get_env()
            .map(|env| format!("`{}`", env.to_string_lossy()))
            .unwrap_or_default();
        let default = arg
            .get_default_values()
            .iter()
            .map(|value| format!("`{}`", value.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(", ");
        let default = if default.is_empty() {
            "unset".to_owned()
        } else {
            default
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|help| cell(&help.to_string()))
            .unwrap_or_default();
        // The values `--help` lists as "[possible values: …]" (true/false goes without saying).
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|value| !value.is_hide_set())
            .map(|value| format!("`{}`", value.get_name()))
            .collect();
        let help = if values.is_empty() || values == ["`true`", "`false`"] {
            help
        } else {
            format!("{help} (one of {})", values.join(", "))
        };
        table.push_str(&format!("| `--{long}` | {env} | {default} | {help} |\n"));
    }
    table
}

#[test]
fn docs_flag_table_is_generated_from_clap() {
    let path = root().join("docs/configuration.md");
    let text = read(&path);
    let (before, rest) = text
        .split_once(FLAGS_BEGIN)
        .unwrap_or_else(|| panic!("{} has no {FLAGS_BEGIN} marker", path.display()));
    let (current, after) = rest
        .split_once(FLAGS_END)
        .unwrap_or_else(|| panic!("{} has no {FLAGS_END} marker", path.display()));
    let wanted = format!("\n{}", flag_table());
    if current == wanted {
        return;
    }
    if std::env::var_os("HOTPLANE_BLESS").is_some_and(|v| v == "1") {
        let updated = format!("{before}{FLAGS_BEGIN}{wanted}{FLAGS_END}{after}");
        std::fs::write(&path, updated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("rewrote the flag table in {}", path.display());
        return;
    }
    panic!(
        "the flag table in {} differs from the clap definitions of hotplane::config::Cli (what \
         `hotplane --help` prints). Regenerate it with HOTPLANE_BLESS=1 cargo nextest run --locked \
         -E 'test(docs_flag_table)' and commit the result.\n--- in the file:\n{current}\n--- from clap:\n{wanted}",
        path.display()
    );
}
