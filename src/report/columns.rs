//! Typed rows → Arrow columns. Declare a row struct with [`table_row!`](crate::table_row).

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_schema::{DataType, Field};

/// A Rust value type that maps to one Arrow column type.
pub trait ColumnValue {
    /// The Arrow builder for this column.
    type Builder: ArrayBuilder + Default;
    /// Arrow type of the column.
    fn data_type() -> DataType;
    /// Whether the column may hold nulls.
    fn nullable() -> bool {
        false
    }
    /// Appends this value.
    fn append(&self, builder: &mut Self::Builder);
    /// Appends a null.
    fn append_null(builder: &mut Self::Builder);
}

macro_rules! column_value {
    ($rust:ty, $builder:ty, $arrow:expr, $value:ident => $converted:expr) => {
        impl ColumnValue for $rust {
            type Builder = $builder;
            fn data_type() -> DataType {
                $arrow
            }
            fn append(&self, builder: &mut Self::Builder) {
                let $value = self;
                builder.append_value($converted);
            }
            fn append_null(builder: &mut Self::Builder) {
                builder.append_null();
            }
        }
    };
}

column_value!(String, StringBuilder, DataType::Utf8, v => v.as_str());
column_value!(&'static str, StringBuilder, DataType::Utf8, v => *v);
column_value!(i32, Int32Builder, DataType::Int32, v => *v);
column_value!(i64, Int64Builder, DataType::Int64, v => *v);
column_value!(u32, UInt32Builder, DataType::UInt32, v => *v);
column_value!(u64, UInt64Builder, DataType::UInt64, v => *v);
column_value!(f32, Float32Builder, DataType::Float32, v => *v);
column_value!(f64, Float64Builder, DataType::Float64, v => *v);
column_value!(bool, BooleanBuilder, DataType::Boolean, v => *v);

impl<T: ColumnValue> ColumnValue for Option<T> {
    type Builder = T::Builder;
    fn data_type() -> DataType {
        T::data_type()
    }
    fn nullable() -> bool {
        true
    }
    fn append(&self, builder: &mut Self::Builder) {
        match self {
            Some(value) => value.append(builder),
            None => T::append_null(builder),
        }
    }
    fn append_null(builder: &mut Self::Builder) {
        T::append_null(builder);
    }
}

/// A struct whose instances are rows of one Parquet table.
pub trait TableRow {
    /// The table's columns, in order.
    fn fields() -> Vec<Field>;
    /// One empty builder per column.
    fn builders() -> Vec<Box<dyn ArrayBuilder>>;
    /// Appends this row's values to the builders.
    fn append(&self, builders: &mut [Box<dyn ArrayBuilder>]);
}

/// Declares a row struct and implements [`TableRow`] for it: one column per field, named as the field.
///
/// ```
/// genolens::table_row! {
///     /// Attention entropy of one head on one sequence.
///     pub struct EntropyRow { pub sequence_id: String, pub layer: u32, pub head: u32, pub entropy_nats: f64 }
/// }
/// ```
#[macro_export]
macro_rules! table_row {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $type:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name { $($(#[$field_meta])* $field_vis $field: $type),* }

        impl $crate::report::TableRow for $name {
            fn fields() -> Vec<$crate::report::reexports::Field> {
                vec![$($crate::report::reexports::Field::new(
                    stringify!($field).trim_start_matches("r#"),
                    <$type as $crate::report::ColumnValue>::data_type(),
                    <$type as $crate::report::ColumnValue>::nullable(),
                )),*]
            }
            fn builders() -> Vec<Box<dyn $crate::report::reexports::ArrayBuilder>> {
                vec![$(Box::new(<<$type as $crate::report::ColumnValue>::Builder as Default>::default())),*]
            }
            fn append(&self, builders: &mut [Box<dyn $crate::report::reexports::ArrayBuilder>]) {
                let mut column = 0usize;
                $(
                    let builder = builders[column]
                        .as_any_mut()
                        .downcast_mut::<<$type as $crate::report::ColumnValue>::Builder>()
                        .expect("builder type matches its column");
                    $crate::report::ColumnValue::append(&self.$field, builder);
                    column += 1;
                )*
                let _ = column;
            }
        }
    };
}
