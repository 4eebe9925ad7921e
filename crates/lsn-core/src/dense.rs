//! `Dense`: a row-major f32 array with its shape, the only tensor type that crosses the backend boundary.

use serde::{Deserialize, Serialize};

/// Row-major f32 values with a shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Dense {
    /// Builds a `Dense`, checking that `data` fills `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> crate::Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(crate::Error::InvalidBatch(format!(
                "dense array of shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }

    /// The same values under another shape of the same size.
    pub fn reshaped(self, shape: Vec<usize>) -> crate::Result<Self> {
        Self::new(shape, self.data)
    }

    /// The contiguous slice along the last axis at the given leading indices.
    pub fn row(&self, lead: &[usize]) -> &[f32] {
        assert_eq!(lead.len() + 1, self.shape.len(), "row() takes all but the last index");
        let last = *self.shape.last().unwrap_or(&1);
        let mut off = 0;
        for (i, &ix) in lead.iter().enumerate() {
            off = off * self.shape[i] + ix;
        }
        &self.data[off * last..(off + 1) * last]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_indexes_row_major() {
        let d = Dense::new(vec![2, 3, 2], (0..12).map(|x| x as f32).collect()).unwrap();
        assert_eq!(d.row(&[1, 2]), &[10.0, 11.0]);
        assert_eq!(d.row(&[0, 1]), &[2.0, 3.0]);
    }

    #[test]
    fn shape_must_match_data() {
        assert!(Dense::new(vec![2, 2], vec![0.0; 3]).is_err());
    }
}
