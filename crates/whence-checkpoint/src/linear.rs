//! The CPU matrix products of the decoder, `y = x·wᵀ (+ b)`, split over
//! blocks of output features that rayon's threads take as they free up.
//!
//! candle's matmul hands each product to gemm with gemm's own threading,
//! which splits every block of the product between the threads and meets
//! at a barrier after each: on a machine shared with other work, the
//! slowest thread sets the pace of every step. Here each task is a whole
//! single-threaded gemm over its own columns (its own slice of the weight,
//! packed once, all rows of `x`), so a thread that is held up costs only
//! its share and the others take the remaining blocks. The result does not
//! depend on which thread computes which block.

use rayon::prelude::*;

use crate::parallel::{block_width, SharedOut};

/// Bad arguments to [`linear`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinearError {
    #[error("linear {what} has {got} values, expected {expected}")]
    Length { what: &'static str, got: usize, expected: usize },
}

/// `out = x·wᵀ (+ bias)`: `x` is `[rows, inputs]`, `w` `[outputs, inputs]`
/// (as stored by transformers), `bias` `[outputs]`, `out` `[rows, outputs]`,
/// all row-major.
pub fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    inputs: usize,
    outputs: usize,
    out: &mut [f32],
) -> Result<(), LinearError> {
    for (what, got, expected) in
        [("input", x.len(), rows * inputs), ("weight", w.len(), outputs * inputs), ("output", out.len(), rows * outputs)]
    {
        if got != expected {
            return Err(LinearError::Length { what, got, expected });
        }
    }
    if let Some(bias) = bias {
        if bias.len() != outputs {
            return Err(LinearError::Length { what: "bias", got: bias.len(), expected: outputs });
        }
    }
    if rows == 0 || outputs == 0 {
        return Ok(());
    }
    if inputs == 0 {
        for row in out.chunks_exact_mut(outputs) {
            match bias {
                Some(bias) => row.copy_from_slice(bias),
                None => row.fill(0.0),
            }
        }
        return Ok(());
    }
    let width = block_width(outputs);
    let w = &w[..outputs * inputs];
    let shared = SharedOut(out.as_mut_ptr());
    (0..outputs.div_ceil(width)).into_par_iter().for_each(move |block| {
        let first = block * width;
        let columns = width.min(outputs - first);
        let shared = shared;
        // SAFETY: columns `first..first+columns` of every row of `out`
        // (checked lengths), which no other task writes.
        unsafe { product(x, &w[first * inputs..(first + columns) * inputs], rows, inputs, columns, shared.0.add(first), outputs) };
        if let Some(bias) = bias {
            let bias = &bias[first..first + columns];
            for row in 0..rows {
                // SAFETY: row < rows and first + columns ≤ outputs; these columns are this task's.
                let cells = unsafe { std::slice::from_raw_parts_mut(shared.0.add(row * outputs + first), columns) };
                for (cell, &b) in cells.iter_mut().zip(bias) {
                    *cell += b;
                }
            }
        }
    });
    Ok(())
}

/// `out[r·stride + c] = Σ_i x[r·inputs + i]·w[c·inputs + i]` for `r < rows`,
/// `c < columns`, on the calling thread (`w` is `[columns, inputs]`).
///
/// # Safety
/// `out` must be valid for writes at those cells, which nothing else may
/// access meanwhile; `x` must hold `rows · inputs` values and `w` `columns ·
/// inputs` (checked with assertions in debug builds only).
pub(crate) unsafe fn product(x: &[f32], w: &[f32], rows: usize, inputs: usize, columns: usize, out: *mut f32, stride: usize) {
    debug_assert!(x.len() >= rows * inputs && w.len() >= columns * inputs && stride >= columns);
    // In gemm's column-major terms: dst (columns × rows, column stride
    // `stride`) = w (columns × inputs, row stride `inputs`) · xᵀ (inputs ×
    // rows, column stride `inputs`).
    unsafe {
        gemm_f32::gemm::f32::get_gemm_fn()(
            columns,
            rows,
            inputs,
            out,
            stride as isize,
            1,
            false,
            w.as_ptr(),
            1,
            inputs as isize,
            x.as_ptr(),
            inputs as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm_common::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2011) as f32 / 1005.5 - 1.0).collect()
    }

    #[test]
    fn matches_a_direct_product() {
        for &(rows, inputs, outputs) in &[(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 96, 200), (130, 64, 1152), (5, 200, 3000)] {
            let x = values(rows * inputs, 1);
            let w = values(outputs * inputs, 2);
            let b = values(outputs, 3);
            for bias in [None, Some(b.as_slice())] {
                let mut out = vec![f32::NAN; rows * outputs];
                linear(&x, &w, bias, rows, inputs, outputs, &mut out).unwrap();
                for r in 0..rows {
                    for o in 0..outputs {
                        let want: f64 = (0..inputs).map(|i| f64::from(x[r * inputs + i]) * f64::from(w[o * inputs + i])).sum::<f64>()
                            + bias.map_or(0.0, |b| f64::from(b[o]));
                        let got = f64::from(out[r * outputs + o]);
                        assert!((got - want).abs() < 1e-4, "{rows}×{inputs}×{outputs} [{r}][{o}]: {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn bad_lengths_are_errors_and_empty_products_are_fine() {
        let mut out = [0f32; 6];
        let err = linear(&[0.0; 5], &[0.0; 6], None, 2, 3, 2, &mut out[..4]).unwrap_err();
        assert_eq!(err, LinearError::Length { what: "input", got: 5, expected: 6 });
        let err = linear(&[0.0; 6], &[0.0; 6], Some(&[0.0]), 2, 3, 2, &mut out[..4]).unwrap_err();
        assert_eq!(err, LinearError::Length { what: "bias", got: 1, expected: 2 });
        let mut out = vec![9f32; 4];
        linear(&[], &[], Some(&[1.0, 2.0]), 2, 0, 2, &mut out).unwrap();
        assert_eq!(out, vec![1.0, 2.0, 1.0, 2.0]);
        linear(&[], &[0.0; 6], None, 0, 3, 2, &mut []).unwrap();
    }
}
