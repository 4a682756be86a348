//! What vendors send is stored faithfully, even what Postgres cannot hold: `text` and `jsonb`
//! refuse U+0000, so a NUL in a vendor's callback, push or answer is stored as the six
//! characters `\u0000` (a backslash-escape, as JSON would write it) instead of failing the
//! write, and the state change it carries still applies. The API refuses NUL in its own
//! fields (`api::error::refuse_nul`); this is for what the gateway does not choose.

use std::borrow::Cow;

use serde_json::Value;

/// How a U+0000 is stored.
pub const NUL_ESCAPE: &str = "\\u0000";

/// `s` with every U+0000 written as `\u0000`.
pub fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', NUL_ESCAPE))
    } else {
        Cow::Borrowed(s)
    }
}

/// In place: every string and key of `value` with U+0000 escaped.
pub fn escape_json(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', NUL_ESCAPE),
        Value::Array(items) => items.iter_mut().for_each(escape_json),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                for (k, v) in old {
                    map.insert(k.replace('\0', NUL_ESCAPE), v);
                }
            }
            map.values_mut().for_each(escape_json);
        }
        _ => {}
    }
}

/// Whether `value` holds a U+0000 anywhere.
pub fn json_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// `value` ready for `jsonb`.
pub fn json(value: &Value) -> Cow<'_, Value> {
    if json_has_nul(value) {
        let mut owned = value.clone();
        escape_json(&mut owned);
        Cow::Owned(owned)
    } else {
        Cow::Borrowed(value)
    }
}

/// An optional string ready for `text`.
pub fn opt_text(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_escaped_everywhere_and_nothing_else_changes() {
        assert_eq!(text("a\0b"), "a\\u0000b");
        assert!(matches!(text("plain"), Cow::Borrowed(_)));
        let value = serde_json::json!({"k\0": ["x\0", {"n": 1, "s": "ok"}]});
        let stored = json(&value);
        assert_eq!(
            stored.as_ref(),
            &serde_json::json!({"k\\u0000": ["x\\u0000", {"n": 1, "s": "ok"}]})
        );
        assert!(!json_has_nul(&stored));
    }
}
