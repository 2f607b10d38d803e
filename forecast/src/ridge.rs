//! Ridge regression on smartcore with standardised features (so one penalty fits columns of any
//! scale) and an unpenalised intercept.

use smartcore::{
    linalg::basic::matrix::DenseMatrix,
    linear::ridge_regression::{
        RidgeRegression, RidgeRegressionParameters, RidgeRegressionSolverName,
    },
};

#[derive(Debug, thiserror::Error)]
#[error("the model could not be fitted: {0}")]
pub struct FitError(String);

pub struct Ridge {
    model: RidgeRegression<f64, f64, DenseMatrix<f64>, Vec<f64>>,
    width: usize,
}

fn matrix(rows: &[Vec<f64>], width: usize) -> Result<DenseMatrix<f64>, FitError> {
    let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    DenseMatrix::new(rows.len(), width, flat, false).map_err(|e| FitError(e.to_string()))
}

impl Ridge {
    /// Fits `targets` on `rows` (all rows the same width, more rows than columns).
    pub fn fit(rows: &[Vec<f64>], targets: &[f64], alpha: f64) -> Result<Self, FitError> {
        let width = rows.first().map_or(0, Vec::len);
        if rows.len() <= width || rows.len() != targets.len() {
            return Err(FitError(format!(
                "{} rows of {width} features for {} targets",
                rows.len(),
                targets.len()
            )));
        }
        let parameters = RidgeRegressionParameters::default()
            .with_alpha(alpha)
            .with_normalize(true)
            .with_solver(RidgeRegressionSolverName::Cholesky);
        let model = RidgeRegression::fit(&matrix(rows, width)?, &targets.to_vec(), parameters)
            .map_err(|e| FitError(e.to_string()))?;
        Ok(Self { model, width })
    }

    pub fn predict(&self, row: &[f64]) -> Result<f64, FitError> {
        if row.len() != self.width {
            return Err(FitError(format!("expected {} features, got {}", self.width, row.len())));
        }
        let out = self
            .model
            .predict(&matrix(&[row.to_vec()], self.width)?)
            .map_err(|e| FitError(e.to_string()))?;
        out.first().copied().ok_or_else(|| FitError("no prediction".into()))
    }
}
