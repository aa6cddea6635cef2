//! The container's hotplane config, derived as hotplane derives it: its own flag parser over the
//! container's environment and args, its own config file loader over the file the ConfigMap
//! mounts. What hotplane would refuse, ignore (a key a variable pins) or never read (a
//! misspelled variable) is reported.

use clap::CommandFactory;
use hotplane::config::{Cli, Config};
use serde_json::Value;

use super::{
    disagreement::Disagreement,
    manifests::{named, secret_value, str_at},
};

/// What the pod's `status.podIP` stands for when a variable refers to it (a documentation
/// address: nothing connects to it).
pub const POD_IP: &str = "192.0.2.10";

/// The container's effective config, as hotplane reads it: the container's environment turned
/// into the flags clap maps those variables to, its args after them, through
/// [`Cli::try_parse_args`]; then the config file (the ConfigMap's data, written to a temporary
/// file standing for the mount) through [`hotplane::config::live::startup_config`].
pub fn hotplane_config(
    docs: &[Value],
    pod: &Value,
    container: &Value,
    out: &mut Vec<Disagreement>,
) -> Option<Config> {
    let args: Vec<String> = container["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let command = Cli::command();
    let mut argv = vec!["hotplane".to_owned()];
    let mut from_env = Vec::new(); // (flag, variable)
    for (name, value) in environment(docs, container, out) {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
        else {
            if name.starts_with("HOTPLANE_") {
                out.push(Disagreement::UnknownVariable(name));
            }
            continue;
        };
        let long = format!("--{}", arg.get_long().expect("every setting has a flag"));
        let given = |a: &String| *a == long || a.starts_with(&format!("{long}="));
        // A flag wins over its variable; clap ignores an empty variable.
        if value.is_empty() || args.iter().any(given) {
            continue;
        }
        if arg.get_action().takes_values() {
            argv.push(format!("{long}={value}"));
        } else if !matches!(value.as_str(), "false" | "0" | "no" | "off" | "n" | "f") {
            argv.push(long.clone());
        }
        from_env.push((long, name));
    }
    argv.extend(args);
    let cli = match Cli::try_parse_args(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            out.push(Disagreement::Config(e.to_string()));
            return None;
        }
    };
    let mut base = cli.config;
    let dir = tempfile::tempdir().expect("a temporary directory");
    if let Some(path) = base.config_file.clone() {
        let path = path.to_string_lossy().into_owned();
        match mounted_file(docs, pod, container, &path) {
            Some(text) => {
                let local = dir.path().join("config.toml");
                std::fs::write(&local, text).expect("writing the config file");
                base.config_file = Some(local);
            }
            None => {
                out.push(Disagreement::ConfigNotMounted(path));
                return None;
            }
        }
    }
    let (effective, loaded) = match hotplane::config::live::startup_config(&base) {
        Ok(r) => r,
        Err(e) => {
            out.push(Disagreement::Config(e.to_string()));
            return None;
        }
    };
    if let Err(e) = effective.validate() {
        out.push(Disagreement::Config(e.to_string()));
        return None;
    }
    if let Some(loaded) = loaded {
        for pinned in hotplane::config::file::pinned_in(&base, &loaded.file) {
            let by = from_env
                .iter()
                .find(|(flag, _)| *flag == pinned.by)
                .map_or(pinned.by.clone(), |(_, var)| var.clone());
            out.push(Disagreement::Pinned {
                key: pinned.key.to_owned(),
                by,
            });
        }
    }
    Some(effective)
}

/// The container's environment as the kubelet sets it: values from Secrets, ConfigMaps and the
/// pod IP resolved (a reference to a key the manifests lack is reported: the pod would not
/// start), `$(VAR)` references to earlier variables expanded.
fn environment(
    docs: &[Value],
    container: &Value,
    out: &mut Vec<Disagreement>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = str_at(var, "/name").to_owned();
        let value = if let Some(v) = var["value"].as_str() {
            expand(v, &env)
        } else if let Some(r) = var.pointer("/valueFrom/secretKeyRef") {
            let (secret, key) = (str_at(r, "/name"), str_at(r, "/key"));
            named(docs, "Secret", secret)
                .and_then(|s| secret_value(s, key))
                .unwrap_or_else(|| {
                    out.push(Disagreement::Missing(format!("Secret {secret} key {key}")));
                    String::new()
                })
        } else if let Some(r) = var.pointer("/valueFrom/configMapKeyRef") {
            let (map, key) = (str_at(r, "/name"), str_at(r, "/key"));
            named(docs, "ConfigMap", map)
                .and_then(|m| m["data"][key].as_str().map(String::from))
                .unwrap_or_else(|| {
                    out.push(Disagreement::Missing(format!("ConfigMap {map} key {key}")));
                    String::new()
                })
        } else if str_at(var, "/valueFrom/fieldRef/fieldPath") == "status.podIP" {
            POD_IP.to_owned()
        } else {
            String::new()
        };
        env.push((name, value));
    }
    env
}

/// `$(NAME)` replaced by an earlier variable's value (unknown references stay as written).
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut s = text.to_owned();
    for (name, value) in env {
        s = s.replace(&format!("$({name})"), value);
    }
    s
}

/// The text of the file at `path` in the container, when a volume mounts it from a ConfigMap
/// (the directory mounted, or the file alone with `subPath`).
fn mounted_file(docs: &[Value], pod: &Value, container: &Value, path: &str) -> Option<String> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .find_map(|mount| {
            let at = str_at(mount, "/mountPath").trim_end_matches('/');
            let key = match str_at(mount, "/subPath") {
                "" => path.strip_prefix(at)?.strip_prefix('/')?,
                sub if path == at => sub,
                _ => return None,
            };
            let volume = pod["spec"]["volumes"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == mount["name"])?;
            let map = named(docs, "ConfigMap", str_at(volume, "/configMap/name"))?;
            map["data"][key].as_str().map(String::from)
        })
}
