//! Tally's published data shapes: the JSON Schema of the client usage log,
//! and the database: the diesel schema, row structs and the checked
//! conversions between rows and the engine's values.
// Text is sliced only through `get`/`split_at_checked`: a byte offset
// inside a multibyte model name once panicked every run (issue 16).
#![deny(clippy::string_slice)]

pub mod convert;
pub mod enums;
pub mod rows;
pub mod schema;

/// JSON Schema (draft 2020-12) of one client usage log record.
pub const CLIENT_USAGE_SCHEMA: &str = include_str!("../client-usage.schema.json");

#[cfg(test)]
mod tests {
    #[test]
    fn schema_is_json_and_names_every_csv_column() {
        let v: serde_json::Value = serde_json::from_str(super::CLIENT_USAGE_SCHEMA).unwrap();
        let props = v["properties"].as_object().unwrap();
        // Every documented CSV column is a property of the schema.
        for col in tally_reconcile::parse::client::CSV_COLUMNS {
            assert!(props.contains_key(col), "{col}");
        }
    }
}
