//! Bounds on what a caller may send, in one place: the handlers check them and the OpenAPI
//! schema states them (`maxLength`, `maxProperties`, …), so a list page or an error cannot
//! grow with hostile input.

use serde_json::Value;

use super::error::ApiError;

/// Job `metadata`, serialized, at most this many bytes (16 KiB).
pub const METADATA_MAX_BYTES: usize = 16 * 1024;
/// Job `metadata` nests at most this deep (the top-level object is depth 1).
pub const METADATA_MAX_DEPTH: usize = 8;
/// Job `metadata` has at most this many top-level keys.
pub const METADATA_MAX_PROPERTIES: usize = 64;
/// Printer ids (slugs) are at most this long.
pub const PRINTER_ID_MAX: usize = 64;
/// Caller input quoted in an error's `detail` is cut to this many characters.
pub const QUOTE_MAX_CHARS: usize = 64;

/// `input` for quoting in an error: at most [`QUOTE_MAX_CHARS`] characters, then `…`.
pub fn quote(input: &str) -> String {
    let mut chars = input.char_indices();
    match chars.nth(QUOTE_MAX_CHARS) {
        Some((at, _)) => format!("{}…", &input[..at]),
        None => input.to_owned(),
    }
}

/// The schema of job `metadata`: an object (or null) of at most 64 keys; the byte and
/// depth limits are in its description (JSON Schema cannot say them).
pub fn metadata_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .max_properties(Some(METADATA_MAX_PROPERTIES))
        .description(Some(format!(
            "Free JSON object, returned as given: at most {METADATA_MAX_BYTES} bytes serialized, {METADATA_MAX_PROPERTIES} keys, {METADATA_MAX_DEPTH} levels deep."
        )))
        .build()
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Checks a job's `metadata`: an object of at most 64 keys, 16 KiB serialized, 8 deep.
pub fn check_metadata(metadata: &Value) -> Result<(), ApiError> {
    let Value::Object(map) = metadata else {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "`metadata` must be a JSON object.",
        ));
    };
    if map.len() > METADATA_MAX_PROPERTIES {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("`metadata` may have at most {METADATA_MAX_PROPERTIES} keys."),
        ));
    }
    if depth(metadata) > METADATA_MAX_DEPTH {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("`metadata` may nest at most {METADATA_MAX_DEPTH} levels deep."),
        ));
    }
    let size = serde_json::to_vec(metadata)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > METADATA_MAX_BYTES {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!(
                "`metadata` is {size} bytes serialized; at most {METADATA_MAX_BYTES} are kept."
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_cuts_long_input_on_a_char_boundary() {
        assert_eq!(quote("short"), "short");
        let long = "漢".repeat(10_000);
        let quoted = quote(&long);
        assert_eq!(quoted.chars().count(), QUOTE_MAX_CHARS + 1);
        assert!(quoted.ends_with('…'));
    }

    #[test]
    fn metadata_bounds() {
        assert!(check_metadata(&serde_json::json!({"order": "1043"})).is_ok());
        let exact = "x".repeat(METADATA_MAX_BYTES - r#"{"a":""}"#.len());
        assert!(check_metadata(&serde_json::json!({ "a": exact })).is_ok());
        let over = "x".repeat(METADATA_MAX_BYTES + 1 - r#"{"a":""}"#.len());
        assert!(check_metadata(&serde_json::json!({ "a": over })).is_err());
        let mut deep = serde_json::json!(1);
        for _ in 0..METADATA_MAX_DEPTH + 1 {
            deep = serde_json::json!({ "a": deep });
        }
        assert!(check_metadata(&deep).is_err());
        assert!(check_metadata(&serde_json::json!([1])).is_err());
    }
}
