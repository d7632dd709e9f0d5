//! Secret values, from the providers `factory.yaml` names (an environment variable, a file, a
//! command run without a shell).

use std::collections::BTreeMap;

use crate::plan::Plan;

/// Secret values, by name, from their providers (the environment variable of the same name when
/// factory.yaml names none). A secret whose provider fails is left out: the stage that needs it
/// fails with the reason when it starts, and no other stage is affected.
pub(super) fn secret_values(plan: &Plan) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in plan.stages() {
        for name in &s.secrets {
            if out.contains_key(name) {
                continue;
            }
            let value = match s.secret_sources.get(name) {
                Some(src) => fetch_secret(src).ok(),
                None => std::env::var(name).ok(),
            };
            if let Some(v) = value {
                out.insert(name.clone(), v);
            }
        }
    }
    out
}

/// Reads one secret from its provider.
pub(super) fn fetch_secret(src: &crate::plan::SecretSource) -> Result<String, String> {
    if let Some(var) = &src.env {
        return std::env::var(var).map_err(|_| format!("environment variable {var} is not set"));
    }
    if let Some(path) = &src.file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Some(argv) = src.command.as_ref().filter(|a| !a.is_empty()) {
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", argv[0]))?;
        if !out.status.success() {
            return Err(format!("{} exited {}", argv[0], out.status.code().unwrap_or(-1)));
        }
        return Ok(String::from_utf8_lossy(&out.stdout).trim_end_matches(['\n', '\r']).to_owned());
    }
    Err("no provider".into())
}
