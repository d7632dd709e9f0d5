//! Durations (`90s`, `20m`) and sizes (`512m`, `2g`) as users write them.

use std::path::Path;
use std::time::Duration;

use crate::diag::{Diagnostic, code};
use crate::spec::Located;

pub(super) fn duration(path: &Path, v: &Located<String>) -> Result<Duration, Diagnostic> {
    match humantime::parse_duration(v.value.trim()) {
        Ok(d) if d.as_secs() > 0 => Ok(d),
        Ok(_) => Err(Diagnostic::new(path, v.at, "a timeout must be at least one second")
            .code(code::TIMEOUT_TOO_SHORT)
            .hint("write e.g. `90s`, `20m` or `1h`")),
        Err(e) => Err(Diagnostic::new(path, v.at, format!("`{}` is not a duration: {e}", v.value.escape_debug()))
            .code(code::TIMEOUT_INVALID)
            .hint("write e.g. `90s`, `20m` or `1h`")),
    }
}

/// Bytes from `512m`, `2g`, `1.5GiB`, `1048576` (binary units: `m` is MiB).
pub(super) fn size(path: &Path, v: &Located<String>) -> Result<u64, Diagnostic> {
    let bad = || {
        Diagnostic::new(path, v.at, format!("`{}` is not a memory size", v.value.escape_debug()))
            .code(code::MEMORY_INVALID)
            .hint("write e.g. `512m` or `2g`")
    };
    let s = v.value.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => 1 << 10,
        "m" | "mb" | "mi" | "mib" => 1 << 20,
        "g" | "gb" | "gi" | "gib" => 1 << 30,
        "t" | "tb" | "ti" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a size as written, checked to be at least 4 MiB and far below u64::MAX"
    )]
    let bytes = (num * mult as f64) as u64;
    if bytes < (4 << 20) {
        return Err(Diagnostic::new(path, v.at, "a memory limit must be at least 4 MiB")
            .code(code::MEMORY_TOO_SMALL)
            .hint("write e.g. `512m`"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Pos;

    fn l(s: &str) -> Located<String> {
        Located::new(s.into(), Pos::START)
    }

    #[test]
    fn parses_units() {
        let p = Path::new("x");
        assert_eq!(size(p, &l("512m")).ok(), Some(512 << 20));
        assert_eq!(size(p, &l("2G")).ok(), Some(2 << 30));
        assert!(size(p, &l("lots")).is_err());
        assert_eq!(duration(p, &l("20m")).ok(), Some(Duration::from_secs(1200)));
        assert!(duration(p, &l("soon")).is_err());
    }
}
