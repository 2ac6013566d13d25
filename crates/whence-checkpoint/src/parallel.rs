//! What the CPU kernels share when they split one product or one attention
//! pass into tasks: the output buffer, and how wide a task's block is.

/// The output buffer of a product or an attention pass, shared by tasks
/// that each write a part no other task writes (disjoint columns, or
/// disjoint (query block, KV head) cells).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: the kernels that make one give each task a part of the buffer
// that no other task reads or writes, and the buffer outlives the tasks.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Output features per task: a multiple of 64 (gemm's AVX-512 tile height,
/// and so of the bf16 kernels' panel), about 8 tasks per product (4 per
/// thread on 2 cores). It depends on the product's shape only, never on
/// the thread count: gemm's blocking (and so the order of its sums) follows
/// the width of the product it is given, so a width chosen by thread count
/// made results differ in the last bits between `--threads 1` and `2`.
pub(crate) fn block_width(outputs: usize) -> usize {
    (outputs / 8 / 64 * 64).clamp(64, 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_multiples_of_64_from_the_shape_alone() {
        assert_eq!(block_width(64), 64);
        assert_eq!(block_width(896), 64);
        assert_eq!(block_width(4864), 576);
        assert_eq!(block_width(151_936), 1024);
        assert!((1..20_000).map(block_width).all(|w| w % 64 == 0 && (64..=1024).contains(&w)));
    }
}
