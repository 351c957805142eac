//! Arrow columns as plain Rust values, whatever physical type a writer chose (pandas writes
//! categoricals as dictionaries, R and polars may write large strings or other integer widths).

use arrow_array::cast::AsArray;
use arrow_array::types::{Int16Type, Int32Type, Int64Type, Int8Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;

/// Text of every row (integers are written in decimal); `None` if the column is neither text nor
/// integer. Nulls stay `None`.
pub fn text_values(column: &ArrayRef) -> Option<Vec<Option<String>>> {
    let rows = 0..column.len();
    let values = match column.data_type() {
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            a.iter().map(|v| v.map(str::to_string)).collect()
        }
        DataType::LargeUtf8 => {
            let a = column.as_string::<i64>();
            a.iter().map(|v| v.map(str::to_string)).collect()
        }
        DataType::Utf8View => {
            let a = column.as_string_view();
            a.iter().map(|v| v.map(str::to_string)).collect()
        }
        DataType::Dictionary(_, _) => {
            let dictionary = column.as_any_dictionary();
            let values = text_values(dictionary.values())?;
            let keys = dictionary.normalized_keys();
            rows.map(|row| {
                if column.is_null(row) {
                    None
                } else {
                    values.get(keys[row]).cloned().flatten()
                }
            })
            .collect()
        }
        _ => integer_values(column)?
            .into_iter()
            .map(|v| v.map(|v| v.to_string()))
            .collect(),
    };
    Some(values)
}

/// Every row as i64 for any integer column; `None` for other types. Nulls stay `None`.
pub fn integer_values(column: &ArrayRef) -> Option<Vec<Option<i64>>> {
    macro_rules! widen {
        ($type:ty) => {
            column
                .as_primitive::<$type>()
                .iter()
                .map(|v| v.map(|v| v as i64))
                .collect()
        };
    }
    let values = match column.data_type() {
        DataType::Int8 => widen!(Int8Type),
        DataType::Int16 => widen!(Int16Type),
        DataType::Int32 => widen!(Int32Type),
        DataType::Int64 => widen!(Int64Type),
        DataType::UInt32 => widen!(UInt32Type),
        DataType::UInt64 => widen!(UInt64Type),
        _ => return None,
    };
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{DictionaryArray, Int32Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn dictionaries_and_integers_read_as_text() {
        let dictionary: DictionaryArray<Int8Type> = vec![Some("b"), None, Some("a"), Some("b")]
            .into_iter()
            .collect();
        let column: ArrayRef = Arc::new(dictionary);
        assert_eq!(
            text_values(&column).unwrap(),
            vec![Some("b".into()), None, Some("a".into()), Some("b".into())]
        );
        let column: ArrayRef = Arc::new(Int32Array::from(vec![Some(3), None]));
        assert_eq!(text_values(&column).unwrap(), vec![Some("3".into()), None]);
        let column: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        assert_eq!(integer_values(&column), None);
    }
}
