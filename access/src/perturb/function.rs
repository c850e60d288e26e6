//! The scalar function that perturbs a released value from its cell key.

use super::*;

/// The scalar function `polder_perturb(value, cell_key, statistic[, largest, n])`: `value`
/// perturbed as [`Statistic`] says, deterministically from the cell key. `statistic` names what
/// is released without depending on how the query is written (function, `DISTINCT`, column).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Perturb {
    signature: Signature,
    secret: CellKeySecret,
    statistic: Statistic,
    count_spread: u32,
    magnitude: Magnitude,
}

impl Perturb {
    /// The scalar function perturbing `statistic` under `spec`, whose key is loaded.
    pub fn udf(spec: &PerturbationSpec, statistic: Statistic) -> Result<ScalarUDF> {
        let secret = spec
            .secret
            .clone()
            .ok_or_else(|| DataFusionError::Internal("a perturbation without its key".into()))?;
        Ok(ScalarUDF::new_from_impl(Self {
            // Volatile: no optimizer rule folds, moves or duplicates it.
            signature: Signature::variadic_any(Volatility::Volatile),
            secret,
            statistic,
            count_spread: spec.count_spread,
            magnitude: spec.magnitude,
        }))
    }
}

impl ScalarUDFImpl for Perturb {
    fn name(&self) -> &str {
        "polder_perturb"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        args.first()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal("polder_perturb without a value".into()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let [value, cell_key, statistic, rest @ ..] = arrays.as_slice() else {
            return Err(DataFusionError::Internal(
                "polder_perturb takes a value, a cell key and a statistic".into(),
            ));
        };
        let output_type = value.data_type().clone();
        let cell_keys = cast(cell_key, &DataType::UInt64)?;
        let cell_keys = cell_keys.as_primitive::<UInt64Type>();
        let statistic = cast(statistic, &DataType::Utf8)?;
        let statistic = statistic.as_string::<i32>();
        let perturbed: ArrayRef = match self.statistic {
            Statistic::Count => {
                let counts = cast(value, &DataType::Int64)?;
                let counts = counts.as_primitive::<Int64Type>();
                let out: Int64Array = (0..rows)
                    .map(|row| {
                        if counts.is_null(row) {
                            return None;
                        }
                        let count = counts.value(row);
                        let draw = self.secret.draw(
                            cell_keys.value(row),
                            statistic.value(row),
                            count as u64,
                        );
                        Some((count + count_noise(draw, self.count_spread)).max(0))
                    })
                    .collect();
                Arc::new(out)
            }
            Statistic::Sum | Statistic::Average => {
                let [largest, n, ..] = rest else {
                    return Err(DataFusionError::Internal(
                        "polder_perturb of a sum or average needs the largest value and n".into(),
                    ));
                };
                let values = cast(value, &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                let largest = cast(largest, &DataType::Float64)?;
                let largest = largest.as_primitive::<Float64Type>();
                let n = cast(n, &DataType::Float64)?;
                let n = n.as_primitive::<Float64Type>();
                let integer = output_type.is_integer();
                let out: Float64Array = (0..rows)
                    .map(|row| {
                        if values.is_null(row) {
                            return None;
                        }
                        let draw = self
                            .secret
                            .draw(cell_keys.value(row), statistic.value(row), 0);
                        let mut spread = self.magnitude.0 * largest.value(row).abs();
                        if self.statistic == Statistic::Average {
                            spread /= n.value(row).max(1.0);
                        }
                        let moved = values.value(row) + spread * unit_noise(draw);
                        Some(if integer { moved.round() } else { moved })
                    })
                    .collect();
                Arc::new(out)
            }
        };
        Ok(ColumnarValue::Array(cast(&perturbed, &output_type)?))
    }
}
