//! A query result's columns read back as Rust values, by column name,
//! whatever Arrow type the engine gave them (dictionary or plain text,
//! Int64 or Float64 counts): each column is cast first, so a reader never
//! assumes a type and never panics on another one.

use arrow::{
    array::{Array, ArrayRef, AsArray, RecordBatch},
    compute::cast,
    datatypes::{ArrowPrimitiveType, DataType, Float64Type, Int64Type},
    error::ArrowError,
};

/// Column `name` of every batch, cast to `to`.
fn column_as(
    batches: &[RecordBatch],
    name: &str,
    to: &DataType,
) -> Result<Vec<ArrayRef>, ArrowError> {
    batches
        .iter()
        .map(|b| {
            let column = b.column_by_name(name).ok_or_else(|| {
                ArrowError::SchemaError(format!("the result has no column {name}"))
            })?;
            cast(column, to)
        })
        .collect()
}

/// Column `name` as text, nulls as `None`.
pub fn texts(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<String>>, ArrowError> {
    let mut out = Vec::new();
    for array in column_as(batches, name, &DataType::Utf8)? {
        let array = array.as_string::<i32>();
        out.extend((0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i).to_owned())));
    }
    Ok(out)
}

fn primitives<T: ArrowPrimitiveType>(
    batches: &[RecordBatch],
    name: &str,
) -> Result<Vec<Option<T::Native>>, ArrowError> {
    let mut out = Vec::new();
    for array in column_as(batches, name, &T::DATA_TYPE)? {
        let array = array.as_primitive::<T>();
        out.extend((0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i))));
    }
    Ok(out)
}

/// Column `name` as integers, nulls as `None`.
pub fn ints(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<i64>>, ArrowError> {
    primitives::<Int64Type>(batches, name)
}

/// Column `name` as floats, nulls as `None`.
pub fn floats(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<f64>>, ArrowError> {
    primitives::<Float64Type>(batches, name)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::{
        array::{DictionaryArray, Int32Array},
        datatypes::{Field, Int32Type, Schema},
    };

    use super::*;

    #[test]
    fn columns_are_read_by_name_whatever_their_type() {
        let names: DictionaryArray<Int32Type> = vec![Some("a"), None].into_iter().collect();
        let counts = Int32Array::from(vec![Some(3), None]);
        let schema = Schema::new(vec![
            Field::new("name", names.data_type().clone(), true),
            Field::new("n", DataType::Int32, true),
        ]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(names), Arc::new(counts)])
            .unwrap();
        let batches = [batch.clone(), batch];
        assert_eq!(
            texts(&batches, "name").unwrap(),
            [Some("a".to_owned()), None, Some("a".to_owned()), None]
        );
        assert_eq!(ints(&batches, "n").unwrap(), [Some(3), None, Some(3), None]);
        assert_eq!(floats(&batches, "n").unwrap()[0], Some(3.0));
        assert!(texts(&batches, "missing").is_err());
    }
}
