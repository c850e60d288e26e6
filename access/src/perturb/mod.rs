//! Deterministic perturbation of released cells: the cell-key method of statistical offices.
//!
//! The minimum group size stops a query from releasing a small group, but not two allowed
//! queries whose groups differ by a few units (a tracker attack: all neighbourhoods, then all
//! but one): their difference is exact. Census tables are protected against this by adding to
//! every released value a small perturbation that is a function of *which records* the value
//! describes, so that:
//!
//! - the same cell asked again, in any phrasing, gets the same perturbation (repeating a query
//!   averages nothing away);
//! - two cells that differ by a few records get independent perturbations, so their difference
//!   is the true difference plus noise of the size of one contribution.
//!
//! Here each row gets a *record key*, a keyed hash of its privacy unit and dimensions (a secret
//! key of the node, so that a caller cannot compute it); the *cell key* of a released value is
//! the sum (modulo 2^64) of the record keys of the rows it aggregates. The perturbation is drawn
//! from the cell key and what is released:
//!
//! - a count moves by an integer in `[-D, D]` (`count_spread`), drawn from a symmetric
//!   triangular distribution (variance `D(D+2)/6`), indexed like an ABS perturbation table by
//!   the cell key and the true count, so that equal counts of the same rows (`count(*)`,
//!   `count(sensor_id)` where no value is NULL) move alike; a count never goes below zero;
//! - a sum moves by `m × M × t` and an average by `m × M × t / n`, where `m` is `magnitude`,
//!   `M` the largest absolute value in the cell, `n` the values averaged and `t` a triangular
//!   draw in `(-1, 1)` indexed by the cell key and the statistic (function and column).
//!
//! What it costs: a count is off by at most `D`; a sum by at most `m` times the cell's largest
//! value, which for a cell of many units is a small share of the sum.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type, UInt64Type};
use datafusion::common::Column as DFColumn;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions::math::expr_fn::abs;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::logical_expr::{Aggregate, Expr, cast as cast_expr, col, lit};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use siphasher::sip::SipHasher13;

use crate::aggregate::{ProtectedPath, refuse, stored_column};
use crate::error::{PerturbationError, ShortSecret};

/// `[dataset.aggregate.perturbation]`: how an aggregate-only dataset's released values are
/// perturbed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerturbationSpec {
    /// A file of at least 32 secret bytes (relative to the policy file), e.g. made with
    /// `head -c 32 /dev/urandom > cell-key.bin`. Keep it: a new key gives every cell new
    /// perturbations, and answers before and after could be averaged.
    pub key_file: PathBuf,
    /// `D`: a released count moves by an integer in `[-D, D]`.
    #[serde(default = "default_count_spread")]
    pub count_spread: u32,
    /// `m`: a released sum moves by at most `m` times the cell's largest absolute value (an
    /// average by that divided by the number of values).
    #[serde(default = "default_magnitude")]
    pub magnitude: Magnitude,
    /// The key, read from `key_file` when the policy is loaded.
    #[serde(skip)]
    pub secret: Option<CellKeySecret>,
}

impl std::fmt::Debug for PerturbationSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerturbationSpec")
            .field("key_file", &self.key_file)
            .field("count_spread", &self.count_spread)
            .field("magnitude", &self.magnitude.0)
            .finish_non_exhaustive()
    }
}

fn default_count_spread() -> u32 {
    2
}

fn default_magnitude() -> Magnitude {
    Magnitude(0.5)
}

/// The aggregate functions whose results can be perturbed.
pub const PERTURBABLE: &[&str] = &["count", "sum", "avg", "mean"];

/// A positive fraction (compared by its bits, so that specs stay `Eq`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(transparent)]
pub struct Magnitude(pub f64);

impl PartialEq for Magnitude {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Magnitude {}

/// The node's secret for one perturbation: one key for record keys, one for draws.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CellKeySecret {
    record: [u8; 16],
    draw: [u8; 16],
}

impl std::fmt::Debug for CellKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CellKeySecret(..)")
    }
}

impl CellKeySecret {
    /// Derives the keys from `bytes` (at least 32 of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ShortSecret> {
        if bytes.len() < 32 {
            return Err(ShortSecret(bytes.len()));
        }
        let digest = Sha256::digest(bytes);
        let mut record = [0; 16];
        let mut draw = [0; 16];
        record.copy_from_slice(&digest[..16]);
        draw.copy_from_slice(&digest[16..]);
        Ok(Self { record, draw })
    }

    fn record_key(&self, fields: &[&[u8]]) -> u64 {
        let mut hasher = SipHasher13::new_with_key(&self.record);
        for field in fields {
            // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
            hasher.write_u64(field.len() as u64);
            hasher.write(field);
        }
        hasher.finish()
    }

    fn draw(&self, cell_key: u64, statistic: &str, value: u64) -> u64 {
        let mut hasher = SipHasher13::new_with_key(&self.draw);
        hasher.write_u64(cell_key);
        hasher.write(statistic.as_bytes());
        hasher.write_u64(value);
        hasher.finish()
    }
}

impl PerturbationSpec {
    /// Checks the parameters and reads the key, `key_file` taken relative to `base`.
    pub fn load_secret(&mut self, base: &Path) -> Result<(), PerturbationError> {
        if self.count_spread == 0 {
            return Err(PerturbationError::CountSpread);
        }
        let m = self.magnitude.0;
        if !(m.is_finite() && m > 0.0 && m <= 10.0) {
            return Err(PerturbationError::Magnitude(m));
        }
        let path = base.join(&self.key_file);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(source) => return Err(PerturbationError::ReadKey { path, source }),
        };
        match CellKeySecret::from_bytes(&bytes) {
            Ok(secret) => self.secret = Some(secret),
            Err(source) => return Err(PerturbationError::ShortKey { path, source }),
        }
        Ok(())
    }
}

/// An integer in `[-spread, spread]` from `draw`, triangular: `spread + 1 - |d|` in
/// `(spread + 1)^2` draws give `d`.
fn count_noise(draw: u64, spread: u32) -> i64 {
    let spread = i64::from(spread);
    let total = (spread + 1) * (spread + 1);
    let mut left = (draw % total as u64) as i64;
    for d in -spread..=spread {
        let weight = spread + 1 - d.abs();
        if left < weight {
            return d;
        }
        left -= weight;
    }
    0
}

/// A number in `(-1, 1)` from `draw`, triangular: the sum of two uniform halves, less one.
fn unit_noise(draw: u64) -> f64 {
    let scale = 1.0 / 4_294_967_296.0;
    let a = ((draw >> 32) as f64 + 0.5) * scale;
    let b = ((draw & 0xffff_ffff) as f64 + 0.5) * scale;
    a + b - 1.0
}

/// What a perturbed value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statistic {
    /// A count: moves by an integer, indexed by the true count.
    Count,
    /// A sum: moves by `m × M × t`.
    Sum,
    /// An average: moves by `m × M × t / n`.
    Average,
}

impl Statistic {
    /// The kind of statistic the aggregate function `name` releases, if it can be perturbed.
    pub fn of_function(name: &str) -> Option<Self> {
        match name {
            "count" => Some(Self::Count),
            "sum" => Some(Self::Sum),
            "avg" | "mean" => Some(Self::Average),
            _ => None,
        }
    }
}

impl std::hash::Hash for Magnitude {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

mod cell_key;
mod function;
mod rewrite;

pub use cell_key::CellKey;
pub use function::Perturb;
pub(crate) use rewrite::perturbed;

/// The record keys of `units` (one field each), for tests of the cell key.
#[cfg(test)]
fn keys_of(secret: &CellKeySecret, units: &[&str]) -> Vec<u64> {
    units
        .iter()
        .map(|u| secret.record_key(&[u.as_bytes()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> CellKeySecret {
        CellKeySecret::from_bytes(&[7; 32]).unwrap()
    }

    #[test]
    fn count_noise_is_symmetric_and_bounded() {
        let mut histogram = [0u64; 5];
        for draw in 0..90_000u64 {
            let d = count_noise(draw.wrapping_mul(0x9E37_79B9_7F4A_7C15), 2);
            histogram[(d + 2) as usize] += 1;
        }
        // Weights 1, 2, 3, 2, 1 of 9.
        for (i, want) in [1.0, 2.0, 3.0, 2.0, 1.0].iter().enumerate() {
            let share = histogram[i] as f64 / 90_000.0;
            assert!((share - want / 9.0).abs() < 0.01, "{histogram:?}");
        }
    }

    #[test]
    fn unit_noise_is_within_one_and_centred() {
        let mut sum = 0.0;
        for draw in 0..10_000u64 {
            let t = unit_noise(draw.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert!(t > -1.0 && t < 1.0);
            sum += t;
        }
        assert!((sum / 10_000.0).abs() < 0.02);
    }

    #[test]
    fn the_cell_key_depends_on_the_rows_not_their_order() {
        let secret = secret();
        let sum = |keys: Vec<u64>| keys.into_iter().fold(0u64, u64::wrapping_add);
        let a = sum(keys_of(&secret, &["r1", "r2", "r3"]));
        let b = sum(keys_of(&secret, &["r3", "r1", "r2"]));
        let c = sum(keys_of(&secret, &["r1", "r2"]));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Another key, other record keys.
        let other = CellKeySecret::from_bytes(&[8; 32]).unwrap();
        assert_ne!(keys_of(&secret, &["r1"]), keys_of(&other, &["r1"]));
        assert!(CellKeySecret::from_bytes(&[1; 31]).is_err());
    }
}
