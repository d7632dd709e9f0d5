//! The committed JSON Schemas are the ones the types generate.

use lightsout::spec::FileKind;

#[test]
fn committed_schemas_are_current() {
    for kind in FileKind::ALL {
        let path = super::root().join("schema").join(kind.schema_file());
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == kind.schema_text(),
            "{} is stale; regenerate it with `cargo run -- schema --write schema`",
            path.display()
        );
    }
}

#[test]
fn schemas_reject_unknown_keys_everywhere() {
    // `deny_unknown_fields` must reach every object in the schema, so editors flag typos too.
    fn walk(v: &serde_json::Value, at: &str, bad: &mut Vec<String>) {
        if let Some(o) = v.as_object() {
            if o.contains_key("properties") && o.get("additionalProperties") != Some(&serde_json::Value::Bool(false)) {
                bad.push(at.to_owned());
            }
            for (k, child) in o {
                walk(child, &format!("{at}/{k}"), bad);
            }
        }
    }
    for kind in FileKind::ALL {
        let mut bad = Vec::new();
        walk(&kind.schema(), "", &mut bad);
        assert!(bad.is_empty(), "{}: objects allowing unknown keys: {bad:?}", kind.name());
    }
}
