//! The documentation checks itself: every relative link in README.md, BENCHMARKS.md and
//! docs/*.md reaches a file that exists and, with an `#anchor`, a heading of that file (or an
//! explicit `<a id="…">`); and every docs/*.md is linked from README.md.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
};

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
