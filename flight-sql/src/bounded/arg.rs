//! The arguments of a call as the bounds see them: sizes, counts and integers per row.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::ColumnarValue;

/// One argument of a call, with what the bounds need to know about each row.
pub(super) struct Arg<'a> {
    value: &'a ColumnarValue,
    /// The argument as 64-bit integers, if it is one (integers, or temporal values as
    /// microseconds since the epoch).
    ints: Option<ArrayRef>,
}

impl<'a> Arg<'a> {
    pub(super) fn new(value: &'a ColumnarValue) -> Self {
        let ints = match value.data_type() {
            t if t.is_integer() => Some(DataType::Int64),
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => {
                Some(DataType::Timestamp(TimeUnit::Microsecond, None))
            }
            _ => None,
        }
        .and_then(|target| {
            let array = value.to_array(1).ok()?;
            cast(&cast(&array, &target).ok()?, &DataType::Int64).ok()
        });
        Self { value, ints }
    }

    fn index(&self, row: usize) -> usize {
        match self.value {
            ColumnarValue::Array(_) => row,
            ColumnarValue::Scalar(_) => 0,
        }
    }

    pub(super) fn int(&self, row: usize) -> Option<i64> {
        let ints = self.ints.as_ref()?.as_primitive::<Int64Type>();
        let i = self.index(row);
        (i < ints.len() && ints.is_valid(i)).then(|| ints.value(i))
    }

    pub(super) fn instant(&self, row: usize) -> Option<i64> {
        self.int(row)
    }

    /// A step of `range`: an integer, or an interval in microseconds (a month counted as 28
    /// days, the shortest).
    pub(super) fn step_micros(&self, row: usize) -> Option<i64> {
        if let Some(i) = self.int(row) {
            return Some(i);
        }
        let scalar = self.scalar(row)?;
        const DAY: i64 = 86_400_000_000;
        match scalar {
            ScalarValue::IntervalMonthDayNano(Some(v)) => Some(
                (v.months as i64 * 28 * DAY)
                    .saturating_add(v.days as i64 * DAY)
                    .saturating_add(v.nanoseconds / 1000)
                    .max(if v.nanoseconds != 0 { 1 } else { 0 }),
            ),
            ScalarValue::IntervalDayTime(Some(v)) => {
                Some(v.days as i64 * DAY + v.milliseconds as i64 * 1000)
            }
            ScalarValue::IntervalYearMonth(Some(m)) => Some(m as i64 * 28 * DAY),
            _ => None,
        }
    }

    fn scalar(&self, row: usize) -> Option<ScalarValue> {
        match self.value {
            ColumnarValue::Scalar(s) => Some(s.clone()),
            ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row).ok(),
        }
    }

    /// Bytes of the row's value: its characters or bytes for strings and binary values, its
    /// data for anything else.
    pub(super) fn bytes(&self, row: usize) -> u128 {
        match self.value {
            ColumnarValue::Scalar(s) => scalar_bytes(s),
            ColumnarValue::Array(a) => array_row_bytes(a.as_ref(), row),
        }
    }

    pub(super) fn is_ascii(&self, row: usize) -> bool {
        match self.value {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
            ) => s.is_ascii(),
            ColumnarValue::Scalar(_) => true,
            ColumnarValue::Array(a) => match a.data_type() {
                DataType::Utf8 => a.as_string::<i32>().value(row).is_ascii(),
                DataType::LargeUtf8 => a.as_string::<i64>().value(row).is_ascii(),
                DataType::Utf8View => a.as_string_view().value(row).is_ascii(),
                _ => false,
            },
        }
    }

    /// `$` and `\` in a replacement: each may reference a group.
    pub(super) fn references(&self, row: usize) -> u128 {
        let count = |s: &str| s.bytes().filter(|b| *b == b'$' || *b == b'\\').count() as u128;
        match self.value {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
            ) => count(s),
            ColumnarValue::Scalar(_) => 0,
            ColumnarValue::Array(a) if a.is_null(row) => 0,
            ColumnarValue::Array(a) => match a.data_type() {
                DataType::Utf8 => count(a.as_string::<i32>().value(row)),
                DataType::LargeUtf8 => count(a.as_string::<i64>().value(row)),
                DataType::Utf8View => count(a.as_string_view().value(row)),
                _ => 0,
            },
        }
    }

    /// Elements of the row's list, counted through nested lists.
    pub(super) fn elements(&self, row: usize) -> u128 {
        let list = match self.value {
            ColumnarValue::Scalar(s) => s.to_array().ok(),
            ColumnarValue::Array(a) => Some(a.slice(row, 1)),
        };
        list.map_or(0, |l| leaf_elements(l.as_ref()))
    }

    /// Bytes of one element of the row's list (its data divided by its elements).
    pub(super) fn element_width(&self, row: usize) -> u128 {
        let elements = self.elements(row).max(1);
        self.bytes(row).div_ceil(elements).max(8)
    }
}

/// Elements of a list array, counted through nested lists (its length for any other array).
fn leaf_elements(array: &dyn Array) -> u128 {
    let values = match array.data_type() {
        DataType::List(_) => {
            let l = array.as_list::<i32>();
            let (from, to) = (l.value_offsets()[0], l.value_offsets()[l.len()]);
            l.values().slice(from as usize, (to - from) as usize)
        }
        DataType::LargeList(_) => {
            let l = array.as_list::<i64>();
            let (from, to) = (l.value_offsets()[0], l.value_offsets()[l.len()]);
            l.values().slice(from as usize, (to - from) as usize)
        }
        DataType::FixedSizeList(_, _) => {
            let l = array.as_fixed_size_list();
            let n = l.value_length() as usize;
            l.values().slice(l.offset() * n, l.len() * n)
        }
        _ => return array.len() as u128,
    };
    leaf_elements(values.as_ref()).max(values.len() as u128)
}

/// Bytes of a scalar's value.
fn scalar_bytes(value: &ScalarValue) -> u128 {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.len() as u128,
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b))
        | ScalarValue::FixedSizeBinary(_, Some(b)) => b.len() as u128,
        ScalarValue::List(a) => slice_bytes(a.as_ref()),
        ScalarValue::LargeList(a) => slice_bytes(a.as_ref()),
        ScalarValue::FixedSizeList(a) => slice_bytes(a.as_ref()),
        v if v.is_null() => 0,
        v => v
            .data_type()
            .primitive_width()
            .map_or_else(|| v.size() as u128, |w| w as u128),
    }
}

/// Bytes of one row's value of `array`.
fn array_row_bytes(array: &dyn Array, row: usize) -> u128 {
    if array.is_null(row) {
        return 0;
    }
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).len() as u128,
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).len() as u128,
        DataType::Utf8View => array.as_string_view().value(row).len() as u128,
        DataType::Binary => array.as_binary::<i32>().value(row).len() as u128,
        DataType::LargeBinary => array.as_binary::<i64>().value(row).len() as u128,
        DataType::BinaryView => array.as_binary_view().value(row).len() as u128,
        t => match t.primitive_width() {
            Some(w) => w as u128,
            None => slice_bytes(array.slice(row, 1).as_ref()),
        },
    }
}

/// The bytes of an array's own part of its buffers (not the whole buffers of a slice).
fn slice_bytes(array: &dyn Array) -> u128 {
    array
        .to_data()
        .get_slice_memory_size()
        .unwrap_or_else(|_| array.get_array_memory_size()) as u128
}
