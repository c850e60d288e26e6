//! The `||` operator on strings as a function, so that it can be bounded like `concat`.

use datafusion::arrow::compute::kernels::concat_elements::concat_elements_dyn;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The `||` operator on two strings of the same type as a function: the kernel DataFusion's
/// binary expression uses (NULL when either side is NULL), and the binary expression's column
/// name, so that replacing the operator changes no answer and no name.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StringConcat {
    signature: Signature,
}

impl StringConcat {
    /// The name peers' SQL dialects translate back to `||`.
    pub const NAME: &str = "polder_string_concat";

    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for StringConcat {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for StringConcat {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [left, right] => Ok(format!("{} || {}", left.schema_name(), right.schema_name())),
            _ => Err(DataFusionError::Internal("|| takes two operands".into())),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [left, right] if left == right => Ok(left.clone()),
            _ => Err(DataFusionError::Internal(format!(
                "|| of {arg_types:?}: its operands are coerced to one string type first"
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return Err(DataFusionError::Internal("|| takes two operands".into()));
        };
        let rows = args.number_rows;
        let joined = concat_elements_dyn(&left.to_array(rows)?, &right.to_array(rows)?)?;
        Ok(ColumnarValue::Array(joined))
    }
}
