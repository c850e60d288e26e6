//! The aggregate function that computes a cell key from the record keys of its rows.

use super::*;

/// The aggregate function `polder_cell_key(unit, dimension, ...)`: the sum modulo 2^64 of the
/// record keys of the rows aggregated.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CellKey {
    signature: Signature,
    secret: CellKeySecret,
}

impl CellKey {
    /// The aggregate function under `secret`.
    pub fn udaf(secret: &CellKeySecret) -> AggregateUDF {
        AggregateUDF::new_from_impl(Self {
            signature: Signature::variadic_any(Volatility::Immutable),
            secret: secret.clone(),
        })
    }
}

impl AggregateUDFImpl for CellKey {
    fn name(&self) -> &str {
        "polder_cell_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CellKeyAccumulator {
            secret: self.secret.clone(),
            key: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "key"),
            DataType::UInt64,
            false,
        ))])
    }
}

#[derive(Debug)]
struct CellKeyAccumulator {
    secret: CellKeySecret,
    key: u64,
}

impl Accumulator for CellKeyAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        // Each field as text, NULL as no bytes with a marker length: a stable identity of the
        // row's unit and dimensions, whatever their types.
        let texts = values
            .iter()
            .map(|v| cast(v, &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()?;
        let texts: Vec<&StringArray> = texts.iter().map(|t| t.as_string::<i32>()).collect();
        let rows = texts.first().map_or(0, |t| t.len());
        let mut fields: Vec<&[u8]> = Vec::with_capacity(texts.len());
        for row in 0..rows {
            fields.clear();
            for text in &texts {
                fields.push(if text.is_null(row) {
                    b"\xff<null>"
                } else {
                    text.value(row).as_bytes()
                });
            }
            self.key = self.key.wrapping_add(self.secret.record_key(&fields));
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::UInt64(Some(self.key)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::UInt64(Some(self.key))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if let Some(keys) = states.first() {
            for key in keys.as_primitive::<UInt64Type>().iter().flatten() {
                self.key = self.key.wrapping_add(key);
            }
        }
        Ok(())
    }
}
