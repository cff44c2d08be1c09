//! A FOCUS export as Parquet: the same rows as its CSV, typed.
//!
//! Made from the CSV text, so a closed month's Parquet is made from the
//! frozen bytes and can never say anything its CSV does not. Amounts are
//! `DECIMAL(18,9)` in 64-bit integers (Tally's nano-dollar unit), times
//! `TIMESTAMP(MILLIS, UTC)`, counts `INT64`, the rest UTF-8 strings; an
//! empty CSV cell is a null.

use std::io::Write;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use rust_decimal::Decimal;
use tally_reconcile::focus::{ColumnType, column_type};

/// Why a FOCUS CSV could not become Parquet.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// The CSV is not a FOCUS export Tally wrote.
    #[error("FOCUS CSV: {0}")]
    Csv(String),
    /// The Parquet writer.
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// The nano-units of a decimal cell (9 places, as Tally stores money).
fn nanos(v: &str) -> Option<i64> {
    let d: Decimal = v.parse().ok()?;
    let n = d.checked_mul(Decimal::from(1_000_000_000i64))?;
    if !n.fract().is_zero() {
        return None;
    }
    i64::try_from(n).ok()
}

fn millis(v: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%SZ")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// Writes the FOCUS export `csv_text` as one Parquet row group to `w`;
/// the rows written.
pub fn write(w: impl Write + Send, csv_text: &str) -> Result<usize, ParquetError> {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| ParquetError::Csv(e.to_string()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut columns: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    for (n, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| ParquetError::Csv(format!("line {}: {e}", n + 2)))?;
        for (i, col) in columns.iter_mut().enumerate() {
            col.push(rec.get(i).unwrap_or("").to_owned());
        }
    }
    let fields: Vec<String> = headers
        .iter()
        .map(|h| match column_type(h) {
            ColumnType::Text => format!("OPTIONAL BYTE_ARRAY {h} (UTF8);"),
            ColumnType::Decimal => format!("OPTIONAL INT64 {h} (DECIMAL(18,9));"),
            ColumnType::Integer => format!("OPTIONAL INT64 {h};"),
            ColumnType::DateTime => format!("OPTIONAL INT64 {h} (TIMESTAMP(MILLIS,true));"),
        })
        .collect();
    let schema = Arc::new(parse_message_type(&format!(
        "message focus {{ {} }}",
        fields.join(" ")
    ))?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by("tally (FOCUS 1.2)".to_owned())
            .build(),
    );
    let mut writer = SerializedFileWriter::new(w, schema, props)?;
    let mut group = writer.next_row_group()?;
    let rows = columns.first().map_or(0, Vec::len);
    for (h, cells) in headers.iter().zip(&columns) {
        let Some(mut col) = group.next_column()? else {
            return Err(ParquetError::Csv(
                "more headers than schema columns".to_owned(),
            ));
        };
        let defs: Vec<i16> = cells.iter().map(|c| i16::from(!c.is_empty())).collect();
        match column_type(h) {
            ColumnType::Text => {
                let values: Vec<ByteArray> = cells
                    .iter()
                    .filter(|c| !c.is_empty())
                    .map(|c| ByteArray::from(c.as_str()))
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&values, Some(&defs), None)?;
            }
            kind => {
                let mut values = Vec::with_capacity(cells.len());
                for (n, c) in cells.iter().enumerate().filter(|(_, c)| !c.is_empty()) {
                    let v = match kind {
                        ColumnType::Decimal => nanos(c),
                        ColumnType::Integer => c.parse::<i64>().ok(),
                        _ => millis(c),
                    };
                    values.push(v.ok_or_else(|| {
                        ParquetError::Csv(format!("line {}: {h} `{c}` is not a {kind:?}", n + 2))
                    })?);
                }
                col.typed::<Int64Type>()
                    .write_batch(&values, Some(&defs), None)?;
            }
        }
        col.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    #[test]
    fn a_focus_csv_reads_back_from_parquet_with_its_types_and_nulls() {
        let csv = "BilledCost,ChargeClass,ChargePeriodStart,x_TallyRequests,Tags\n\
                   0.123456789,,2026-11-20T00:00:00Z,3,\"{\"\"team\"\":\"\"support\"\"}\"\n\
                   -0.5,Correction,2026-11-21T00:00:00Z,1,\n";
        let f = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(write(f.reopen().unwrap(), csv).unwrap(), 2);
        let r = SerializedFileReader::new(f.reopen().unwrap()).unwrap();
        let rows: Vec<_> = r.get_row_iter(None).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        let cols: Vec<(&String, &Field)> = rows[0].get_column_iter().collect();
        assert_eq!(cols[0].0, "BilledCost");
        match cols[0].1 {
            Field::Decimal(d) => assert_eq!(d.data(), 123_456_789i64.to_be_bytes()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(cols[1].1, Field::Null), "an empty cell is a null");
        assert!(matches!(
            cols[2].1,
            Field::TimestampMillis(1_795_132_800_000)
        ));
        assert!(matches!(cols[3].1, Field::Long(3)));
        let second: Vec<(&String, &Field)> = rows[1].get_column_iter().collect();
        assert!(matches!(second[1].1, Field::Str(s) if s == "Correction"));
        // A cell that is not its type is refused, naming line and column.
        let bad = "BilledCost\n1.2.3\n";
        let e = write(Vec::new(), bad).unwrap_err().to_string();
        assert!(e.contains("line 2: BilledCost"), "{e}");
    }
}
