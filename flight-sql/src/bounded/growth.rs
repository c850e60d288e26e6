//! How the output of each bounded function grows with its arguments, and the upper bound of
//! its bytes computed from their values.

use datafusion::logical_expr::ColumnarValue;

use super::arg::Arg;

/// How one bounded function's output grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Growth {
    /// `repeat(s, n)`: `len(s) * n`.
    Repeat,
    /// `lpad(s, n [, fill])`, `rpad`: `len(s) + n` characters of `fill` (4 bytes each unless
    /// `fill` is ASCII).
    Pad,
    /// `replace(s, from, to)`: one `to` per `from` in `s` (per character if `from` is empty).
    Replace,
    /// `regexp_replace(s, pattern, replacement [, flags])`: one replacement per match, at
    /// most one match per byte; each group reference copies at most `s` once over all matches.
    RegexpReplace,
    /// `array_to_string(array, delimiter [, null])`: the elements and one delimiter (or null
    /// string) each.
    ArrayToString,
    /// The sum of the arguments, times a factor.
    Sum(u8),
    /// `concat_ws(separator, value...)`: the values and a separator between each two.
    ConcatWs,
    /// `array_repeat(element, n)`: `size(element) * n`.
    ArrayRepeat,
    /// `array_resize(array, n [, value])`: `n` elements of the larger of the array's and value's.
    ArrayResize,
    /// `range(start, stop, step)` (`inclusive = false`), `generate_series` (`true`).
    Range,
}

impl Growth {
    /// The growth of DataFusion's default function `name`, if it is one this module bounds.
    pub fn of(name: &str) -> Option<Growth> {
        Some(match name {
            "repeat" => Growth::Repeat,
            "lpad" | "rpad" => Growth::Pad,
            "replace" => Growth::Replace,
            "regexp_replace" => Growth::RegexpReplace,
            "array_to_string" => Growth::ArrayToString,
            "concat_ws" => Growth::ConcatWs,
            "concat" | "array_concat" | "array_append" | "array_prepend" => Growth::Sum(1),
            "overlay" | "encode" => Growth::Sum(2),
            "array_repeat" => Growth::ArrayRepeat,
            "array_resize" => Growth::ArrayResize,
            "range" | "generate_series" => Growth::Range,
            _ => return None,
        })
    }
}

/// An upper bound of the bytes `growth`'s function returns for `rows` rows of `args`. A
/// scalar argument stands for every row; bounds saturate rather than overflow.
pub(super) fn output_bound(growth: Growth, args: &[ColumnarValue], rows: usize) -> u128 {
    let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let (distinct, copies) = if all_scalar {
        (1, rows.max(1))
    } else {
        (rows, 1)
    };
    let args: Vec<Arg> = args.iter().map(Arg::new).collect();
    let mut total: u128 = 0;
    for row in 0..distinct {
        total = total.saturating_add(row_bound(growth, &args, row));
    }
    // Offsets and validity: 8 bytes per row is more than either takes.
    total
        .saturating_mul(copies as u128)
        .saturating_add(rows as u128 * 8)
}

/// An upper bound of the bytes `growth`'s function returns for row `row` of `args`.
fn row_bound(growth: Growth, args: &[Arg], row: usize) -> u128 {
    let bytes = |i: usize| args.get(i).map_or(0, |a| a.bytes(row));
    let int = |i: usize| args.get(i).and_then(|a| a.int(row));
    let count = |i: usize| int(i).unwrap_or(0).max(0) as u128;
    match growth {
        Growth::Repeat => bytes(0).saturating_mul(count(1)),
        Growth::Pad => {
            let width = match args.get(2) {
                Some(fill) if !fill.is_ascii(row) => 4,
                _ => 1,
            };
            bytes(0).saturating_add(count(1).saturating_mul(width))
        }
        Growth::Replace => {
            let s = bytes(0);
            let matches = s / bytes(1).max(1) + 1;
            s.saturating_add(matches.saturating_mul(bytes(2)))
        }
        Growth::RegexpReplace => {
            let s = bytes(0);
            let replacement = args.get(2).map_or(0, |a| a.bytes(row));
            let references = args.get(2).map_or(0, |a| a.references(row));
            s.saturating_add((s + 1).saturating_mul(replacement))
                .saturating_add(s.saturating_mul(references))
        }
        Growth::ArrayToString => {
            let elements = args.first().map_or(0, |a| a.elements(row));
            let per_element = bytes(1).max(bytes(2));
            bytes(0).saturating_add(elements.saturating_mul(per_element.saturating_add(20)))
        }
        Growth::Sum(factor) => (0..args.len())
            .map(bytes)
            .fold(0u128, u128::saturating_add)
            .saturating_mul(factor as u128),
        Growth::ConcatWs => (1..args.len())
            .map(bytes)
            .fold(0u128, u128::saturating_add)
            .saturating_add(bytes(0).saturating_mul(args.len().saturating_sub(2) as u128)),
        Growth::ArrayRepeat => bytes(0).max(1).saturating_mul(count(1)),
        Growth::ArrayResize => {
            let element = args
                .first()
                .map_or(8, |a| a.element_width(row))
                .max(bytes(2));
            bytes(0).saturating_add(count(1).saturating_mul(element.max(1)))
        }
        Growth::Range => range_elements(args, row).saturating_mul(8),
    }
}

/// How many elements `range`/`generate_series` returns for one row (one more than the exact
/// count of `range`, which is as good a bound).
fn range_elements(args: &[Arg], row: usize) -> u128 {
    let (start, stop, step) = match args {
        [stop] => (Some(0), stop.instant(row), None),
        [start, stop] => (start.instant(row), stop.instant(row), None),
        [start, stop, step, ..] => (start.instant(row), stop.instant(row), Some(step)),
        [] => return 0,
    };
    let (Some(start), Some(stop)) = (start, stop) else {
        return 0;
    };
    let span = (stop as i128 - start as i128).unsigned_abs();
    // Integer ranges count in ones; temporal ones in microseconds.
    let step = match step {
        None => 1,
        Some(step) => match step.step_micros(row) {
            Some(s) if s != 0 => s.unsigned_abs() as u128,
            _ => return 0, // a zero or null step is refused or null, not expanded
        },
    };
    span / step.max(1) + 1
}
