//! bf16 matrix products on the CPU, `y = x·wᵀ`, with the weight kept in
//! bf16 (half the memory of f32) and every product accumulated in f32.
//!
//! What is computed, on every path: `x` is rounded to bf16 (round to
//! nearest, ties to even, as `torch.bfloat16` does), each product of two
//! bf16 values is exact in f32, and the sums are f32. Paths differ only in
//! the order of those f32 sums, so results agree across CPUs to f32
//! rounding, not bit for bit. Two kernels, chosen at run time:
//!
//! - [`Bf16Kernel::Avx512Bf16`] (CPUs with AVX512_BF16, e.g. AMD Zen 4,
//!   Intel Cooper Lake and Sapphire Rapids): `vdpbf16ps` multiplies 32
//!   pairs of bf16 and adds them into 16 f32 lanes per instruction, twice
//!   the products of an f32 FMA. The weight is packed once, at load, into
//!   panels of [`PANEL`] output features with the inputs in pairs
//!   ([`PackedBf16`], the same size as the checkpoint's bf16 tensor), so a
//!   pass reads it as it is; a 12-row × 32-column tile of `y` stays in
//!   registers while a block of inputs streams through.
//! - [`Bf16Kernel::Widened`] (every other CPU): each task widens its block
//!   of the weight to f32 (exact) and runs the f32 GEMM of
//!   [`crate::linear`] (gemm-f32, which itself picks AVX-512F, AVX2 + FMA or
//!   scalar code at run time) on the bf16-rounded `x`.
//!
//! `WHENCE_BF16_KERNEL=widened` forces the second where the first is
//! available (for comparisons and tests); [`Bf16Kernel::available`] lists
//! what this CPU can run.

use std::sync::OnceLock;

use half::bf16;
use rayon::prelude::*;

use crate::parallel::{block_width, SharedOut};

/// Output features per panel of the packed layout (two 16-lane registers).
pub const PANEL: usize = 32;
/// Rows of `x` per register tile of the AVX512_BF16 kernel.
const TILE_ROWS: usize = 12;
/// Input pairs per block (a 32 × 128-pair panel block is 16 KB, in L1).
const BLOCK_PAIRS: usize = 128;
/// Rows of `x` per block (240 rows × 128 pairs × 4 bytes = 120 KB, in L2).
const BLOCK_ROWS: usize = 20 * TILE_ROWS;

/// How bf16 products are computed on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bf16Kernel {
    /// Native bf16 dot products (`vdpbf16ps`).
    Avx512Bf16,
    /// bf16 widened to f32, then the f32 GEMM.
    Widened,
}

impl Bf16Kernel {
    /// The kernel used: AVX512_BF16 where the CPU has it, unless
    /// `WHENCE_BF16_KERNEL=widened`; decided once per process.
    pub fn detected() -> Bf16Kernel {
        static KERNEL: OnceLock<Bf16Kernel> = OnceLock::new();
        *KERNEL.get_or_init(|| {
            let forced = std::env::var("WHENCE_BF16_KERNEL").ok();
            match forced.as_deref() {
                Some("widened") => Bf16Kernel::Widened,
                _ if native_available() => Bf16Kernel::Avx512Bf16,
                _ => Bf16Kernel::Widened,
            }
        })
    }

    /// Every kernel this CPU can run (the widened one always).
    pub fn available() -> Vec<Bf16Kernel> {
        let mut kernels = vec![Bf16Kernel::Widened];
        if native_available() {
            kernels.push(Bf16Kernel::Avx512Bf16);
        }
        kernels
    }

    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Avx512Bf16 => "avx512-bf16",
            Bf16Kernel::Widened => "widened-f32",
        }
    }
}

fn native_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Bad arguments to the bf16 products.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Bf16Error {
    #[error("bf16 {what} has {got} values, expected {expected}")]
    Length { what: &'static str, got: usize, expected: usize },
}

fn check_length(what: &'static str, got: usize, expected: usize) -> Result<(), Bf16Error> {
    if got == expected {
        Ok(())
    } else {
        Err(Bf16Error::Length { what, got, expected })
    }
}

/// A `[outputs, inputs]` bf16 weight (as transformers stores it), laid out
/// for one kernel.
#[derive(Clone)]
pub struct PackedBf16 {
    outputs: usize,
    inputs: usize,
    kernel: Bf16Kernel,
    layout: Layout,
}

#[derive(Clone)]
enum Layout {
    /// Row-major `[outputs, inputs]`, as stored.
    Rows(Vec<bf16>),
    /// Panels of [`PANEL`] outputs: value `(p, lane)` of panel `j` at
    /// `(j·pairs + p)·PANEL + lane` holds inputs `2p` (low half) and `2p + 1`
    /// (high half, 0 past the end) of output `j·PANEL + lane` (0 past the end).
    Panels { pairs: usize, values: Vec<u32> },
}

impl std::fmt::Debug for PackedBf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedBf16[{} × {}, {}]", self.outputs, self.inputs, self.kernel.name())
    }
}

fn pair(lo: bf16, hi: bf16) -> u32 {
    u32::from(lo.to_bits()) | (u32::from(hi.to_bits()) << 16)
}

impl PackedBf16 {
    /// Lays out `weight` (`[outputs, inputs]`, row-major) for `kernel`.
    pub fn new(weight: Vec<bf16>, outputs: usize, inputs: usize, kernel: Bf16Kernel) -> Result<Self, Bf16Error> {
        match kernel {
            Bf16Kernel::Widened => {
                check_length("weight", weight.len(), outputs * inputs)?;
                Ok(PackedBf16 { outputs, inputs, kernel, layout: Layout::Rows(weight) })
            }
            Bf16Kernel::Avx512Bf16 => PackedBf16::from_slice(&weight, outputs, inputs, kernel),
        }
    }

    /// [`PackedBf16::new`] from borrowed values (the panels are built from
    /// them directly, without a copy of the weight first).
    pub fn from_slice(weight: &[bf16], outputs: usize, inputs: usize, kernel: Bf16Kernel) -> Result<Self, Bf16Error> {
        check_length("weight", weight.len(), outputs * inputs)?;
        let layout = match kernel {
            Bf16Kernel::Widened => Layout::Rows(weight.to_vec()),
            Bf16Kernel::Avx512Bf16 => {
                let pairs = inputs.div_ceil(2);
                let panels = outputs.div_ceil(PANEL);
                let mut values = vec![0u32; panels * pairs * PANEL];
                values.par_chunks_mut((pairs * PANEL).max(1)).enumerate().for_each(|(panel, values)| {
                    let first = panel * PANEL;
                    for lane in 0..PANEL.min(outputs - first) {
                        let row = &weight[(first + lane) * inputs..(first + lane + 1) * inputs];
                        for (p, two) in row.chunks(2).enumerate() {
                            values[p * PANEL + lane] = pair(two[0], two.get(1).copied().unwrap_or(bf16::ZERO));
                        }
                    }
                });
                Layout::Panels { pairs, values }
            }
        };
        Ok(PackedBf16 { outputs, inputs, kernel, layout })
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn kernel(&self) -> Bf16Kernel {
        self.kernel
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match &self.layout {
            Layout::Rows(values) => values.len() * 2,
            Layout::Panels { values, .. } => values.len() * 4,
        }
    }

    /// Output feature `row`'s weights, widened to f32 (an embedding lookup
    /// in a tied head); `None` past the end.
    pub fn row(&self, row: usize) -> Option<Vec<f32>> {
        if row >= self.outputs {
            return None;
        }
        Some(match &self.layout {
            Layout::Rows(values) => values[row * self.inputs..(row + 1) * self.inputs].iter().map(|v| v.to_f32()).collect(),
            Layout::Panels { pairs, values } => {
                let (panel, lane) = (row / PANEL, row % PANEL);
                let base = panel * pairs * PANEL + lane;
                (0..self.inputs)
                    .map(|k| {
                        let two = values[base + (k / 2) * PANEL];
                        bf16::from_bits((two >> (16 * (k % 2))) as u16).to_f32()
                    })
                    .collect()
            }
        })
    }

    /// The whole weight in its original row-major order, widened to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        (0..self.outputs).flat_map(|row| self.row(row).expect("in range")).collect()
    }
}

/// Rows of `x` rounded to bf16, in the form `kernel` reads; made once per
/// product and shared by its tasks.
pub struct Bf16Rows {
    rows: usize,
    inputs: usize,
    data: RowsData,
}

enum RowsData {
    /// `[rows, pairs]`: inputs `2p` and `2p + 1` of a row in one `u32`.
    Pairs { pairs: usize, values: Vec<u32> },
    /// `[rows, inputs]`: the f32 values of the bf16-rounded inputs.
    Rounded(Vec<f32>),
}

/// `x` rounded to bf16 (nearest, ties to even), as f32.
pub fn round_to_bf16(x: f32) -> f32 {
    bf16::from_f32(x).to_f32()
}

impl Bf16Rows {
    pub fn new(x: &[f32], rows: usize, inputs: usize, kernel: Bf16Kernel) -> Result<Self, Bf16Error> {
        check_length("input", x.len(), rows * inputs)?;
        let data = match kernel {
            Bf16Kernel::Widened => {
                let mut values = vec![0f32; x.len()];
                values.par_chunks_mut(1 << 16).zip(x.par_chunks(1 << 16)).for_each(|(out, x)| {
                    for (o, &v) in out.iter_mut().zip(x) {
                        *o = round_to_bf16(v);
                    }
                });
                RowsData::Rounded(values)
            }
            Bf16Kernel::Avx512Bf16 => {
                let pairs = inputs.div_ceil(2);
                let mut values = vec![0u32; rows * pairs];
                if pairs > 0 {
                    let rows_per_task = (1 << 15) / pairs + 1;
                    values.par_chunks_mut(pairs * rows_per_task).zip(x.par_chunks(inputs * rows_per_task)).for_each(|(out, x)| {
                        for (out, row) in out.chunks_exact_mut(pairs).zip(x.chunks_exact(inputs)) {
                            #[cfg(target_arch = "x86_64")]
                            // SAFETY: this kernel exists only where the CPU has AVX512_BF16.
                            let done = unsafe { native::round_pairs(row, out) };
                            #[cfg(not(target_arch = "x86_64"))]
                            let done = 0;
                            for (o, two) in out[done..].iter_mut().zip(row[2 * done..].chunks(2)) {
                                *o = pair(bf16::from_f32(two[0]), bf16::from_f32(two.get(1).copied().unwrap_or(0.0)));
                            }
                        }
                    });
                }
                RowsData::Pairs { pairs, values }
            }
        };
        Ok(Bf16Rows { rows, inputs, data })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Per-task working memory of [`product`] (the widened weight block).
#[derive(Default)]
pub struct Scratch {
    widened: Vec<f32>,
}

/// `out[r·stride + c] = Σ_i x[r][i]·w[first + c][i]` for every row `r` of `x`
/// and `c < columns`, on the calling thread.
///
/// # Safety
/// `out` must be valid for writes at those cells, which nothing else may
/// access meanwhile, and `stride ≥ columns`. `first` must be a multiple of
/// [`PANEL`], `first + columns ≤ w.outputs()`, `x` and `w` must have the
/// same inputs and the same kernel (checked in debug builds only).
pub(crate) unsafe fn product(
    x: &Bf16Rows,
    w: &PackedBf16,
    first: usize,
    columns: usize,
    out: *mut f32,
    stride: usize,
    scratch: &mut Scratch,
) {
    debug_assert!(x.inputs == w.inputs && first.is_multiple_of(PANEL) && first + columns <= w.outputs && stride >= columns);
    if x.rows == 0 || columns == 0 {
        return;
    }
    match (&x.data, &w.layout) {
        (RowsData::Rounded(xs), Layout::Rows(ws)) => {
            let block = &ws[first * w.inputs..(first + columns) * w.inputs];
            scratch.widened.clear();
            scratch.widened.extend(block.iter().map(|v| v.to_f32()));
            // SAFETY: as this function's contract; shapes match.
            unsafe { crate::linear::product(xs, &scratch.widened, x.rows, x.inputs, columns, out, stride) };
        }
        #[cfg(target_arch = "x86_64")]
        (RowsData::Pairs { pairs, values: xs }, Layout::Panels { values: ws, .. }) => {
            // SAFETY: Pairs and Panels exist only where the CPU has AVX512_BF16.
            unsafe { native::product(xs, x.rows, *pairs, ws, first / PANEL, columns, out, stride) }
        }
        _ => unreachable!("rows and weight of different bf16 kernels"),
    }
}

/// `out = x·wᵀ (+ bias)` with `x` `[rows, w.inputs()]` f32 (rounded to bf16),
/// `w` bf16, `bias` f32 `[w.outputs()]`, `out` `[rows, w.outputs()]`; blocks of
/// output features are tasks on rayon's pool.
pub fn linear(x: &[f32], w: &PackedBf16, bias: Option<&[f32]>, rows: usize, out: &mut [f32]) -> Result<(), Bf16Error> {
    let (inputs, outputs) = (w.inputs, w.outputs);
    check_length("input", x.len(), rows * inputs)?;
    check_length("output", out.len(), rows * outputs)?;
    if let Some(bias) = bias {
        check_length("bias", bias.len(), outputs)?;
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
    let x = Bf16Rows::new(x, rows, inputs, w.kernel)?;
    // SAFETY: `out` holds rows × outputs cells (checked), all ours.
    unsafe { linear_rows(&x, w, bias, out.as_mut_ptr()) };
    Ok(())
}

/// [`linear`] into a new vector, which on the AVX512_BF16 path is not
/// zeroed first (every cell is written once; zeroing cost about 2% of a
/// pass of 512 tokens).
pub fn linear_to_vec(x: &[f32], w: &PackedBf16, bias: Option<&[f32]>, rows: usize) -> Result<Vec<f32>, Bf16Error> {
    let (inputs, outputs) = (w.inputs, w.outputs);
    check_length("input", x.len(), rows * inputs)?;
    if let Some(bias) = bias {
        check_length("bias", bias.len(), outputs)?;
    }
    let cells = rows * outputs;
    if w.kernel != Bf16Kernel::Avx512Bf16 || inputs == 0 || cells == 0 {
        let mut out = vec![0f32; cells];
        linear(x, w, bias, rows, &mut out)?;
        return Ok(out);
    }
    let x = Bf16Rows::new(x, rows, inputs, w.kernel)?;
    let mut out = Vec::<f32>::with_capacity(cells);
    // SAFETY: the capacity holds rows × outputs cells; the AVX512_BF16 path
    // with inputs > 0 writes every one of them (each tile's first block of
    // pairs stores its sums without reading), so all are initialised before
    // the length is set.
    unsafe {
        linear_rows(&x, w, bias, out.as_mut_ptr());
        out.set_len(cells);
    }
    Ok(out)
}

/// The products of [`linear`], `x` already rounded.
///
/// # Safety
/// `out` must be valid for writes (and reads) of `x.rows × w.outputs`
/// cells that nothing else accesses meanwhile; `x.inputs == w.inputs`, the
/// same kernel, and `w.inputs > 0`, `x.rows > 0`.
unsafe fn linear_rows(x: &Bf16Rows, w: &PackedBf16, bias: Option<&[f32]>, out: *mut f32) {
    let (rows, outputs) = (x.rows, w.outputs);
    let shared = SharedOut(out);
    #[cfg(target_arch = "x86_64")]
    if let (RowsData::Pairs { pairs, values: xs }, Layout::Panels { values: ws, .. }) = (&x.data, &w.layout) {
        // Tasks are (block of rows, block of outputs): each output's sums run
        // over the inputs in the same order whatever the blocks, so the grid
        // only balances the threads (a product of 512 rows × 1152 outputs is
        // 15 tasks, not 9 for 2 threads) and does not change the result.
        let row_blocks = rows.div_ceil(BLOCK_ROWS);
        let block_rows = rows.div_ceil(row_blocks).next_multiple_of(TILE_ROWS);
        let width = if outputs >= 4096 { 8 * PANEL } else { 4 * PANEL };
        let column_blocks = outputs.div_ceil(width);
        (0..row_blocks * column_blocks).into_par_iter().for_each(move |task| {
            let (r0, first) = ((task / column_blocks) * block_rows, (task % column_blocks) * width);
            let (task_rows, columns) = (block_rows.min(rows - r0), width.min(outputs - first));
            let shared = shared;
            // SAFETY: the CPU has AVX512_BF16 (Pairs exist only then); rows
            // r0..r0+task_rows and columns first..first+columns of `out`
            // (checked lengths), which no other task writes.
            unsafe {
                let cells = shared.0.add(r0 * outputs + first);
                native::product(&xs[r0 * pairs..], task_rows, *pairs, ws, first / PANEL, columns, cells, outputs);
                if let Some(bias) = bias {
                    add_bias(cells, task_rows, outputs, &bias[first..first + columns]);
                }
            }
        });
        return;
    }
    let width = block_width(outputs);
    (0..outputs.div_ceil(width)).into_par_iter().for_each_init(Scratch::default, move |scratch, block| {
        let first = block * width;
        let columns = width.min(outputs - first);
        let shared = shared;
        // SAFETY: columns `first..first+columns` of every row of `out`
        // (checked lengths), which no other task writes.
        unsafe { product(x, w, first, columns, shared.0.add(first), outputs, scratch) };
        if let Some(bias) = bias {
            // SAFETY: as above, this task's columns of every row.
            unsafe { add_bias(shared.0.add(first), rows, outputs, &bias[first..first + columns]) };
        }
    });
}

/// Adds `bias` to the first `bias.len()` cells of `rows` rows at `cells`
/// (row stride `stride`).
///
/// # Safety
/// Those cells must be valid for reads and writes, and no one else's.
unsafe fn add_bias(cells: *mut f32, rows: usize, stride: usize, bias: &[f32]) {
    for row in 0..rows {
        // SAFETY: the caller's cells.
        let cells = unsafe { std::slice::from_raw_parts_mut(cells.add(row * stride), bias.len()) };
        for (cell, &b) in cells.iter_mut().zip(bias) {
            *cell += b;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod native {
    use std::arch::x86_64::*;

    use super::{BLOCK_PAIRS, BLOCK_ROWS, PANEL, TILE_ROWS};

    /// Columns `panel0·PANEL ..+ columns` of `x·wᵀ` into `out` (row stride
    /// `stride`), `x` `[rows, pairs]` and `w` in panels of `pairs` pairs.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn product(
        x: &[u32],
        rows: usize,
        pairs: usize,
        w: &[u32],
        panel0: usize,
        columns: usize,
        out: *mut f32,
        stride: usize,
    ) {
        let panels = columns.div_ceil(PANEL);
        if pairs == 0 {
            for r in 0..rows {
                // SAFETY: cells of this call's rows and columns.
                unsafe { std::ptr::write_bytes(out.add(r * stride), 0, columns) };
            }
            return;
        }
        for r0 in (0..rows).step_by(BLOCK_ROWS) {
            let block_rows = BLOCK_ROWS.min(rows - r0);
            for p0 in (0..pairs).step_by(BLOCK_PAIRS) {
                let block_pairs = BLOCK_PAIRS.min(pairs - p0);
                for j in 0..panels {
                    let valid = PANEL.min(columns - j * PANEL);
                    let panel = &w[((panel0 + j) * pairs + p0) * PANEL..];
                    for m0 in (0..block_rows).step_by(TILE_ROWS) {
                        let m = TILE_ROWS.min(block_rows - m0);
                        let x = &x[(r0 + m0) * pairs + p0..];
                        // SAFETY: the tile's cells are within this call's rows and columns.
                        let out = unsafe { out.add((r0 + m0) * stride + j * PANEL) };
                        let first = p0 == 0;
                        // SAFETY: the caller checked AVX512_BF16; indices as above.
                        unsafe {
                            match m {
                                12 => tile::<12>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                11 => tile::<11>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                10 => tile::<10>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                9 => tile::<9>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                8 => tile::<8>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                7 => tile::<7>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                6 => tile::<6>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                5 => tile::<5>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                4 => tile::<4>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                3 => tile::<3>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                2 => tile::<2>(x, pairs, panel, block_pairs, out, stride, valid, first),
                                _ => tile::<1>(x, pairs, panel, block_pairs, out, stride, valid, first),
                            }
                        }
                    }
                }
            }
        }
    }

    /// Rounds `row` to bf16 pairs into `out` 32 values at a time
    /// (`vcvtne2ps2bf16`: to nearest, ties to even, as `bf16::from_f32`;
    /// subnormals may become zero, which is how `vdpbf16ps` reads them anyway); returns
    /// how many pairs it wrote, the rest being the caller's.
    ///
    /// # Safety
    /// The CPU must have AVX512_BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn round_pairs(row: &[f32], out: &mut [u32]) -> usize {
        let chunks = (row.len() / 32).min(out.len() / 16);
        for c in 0..chunks {
            // SAFETY: c·32 + 32 ≤ row.len() and c·16 + 16 ≤ out.len().
            unsafe {
                let low = _mm512_loadu_ps(row.as_ptr().add(c * 32));
                let high = _mm512_loadu_ps(row.as_ptr().add(c * 32 + 16));
                let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
                _mm512_storeu_si512(out.as_mut_ptr().add(c * 16).cast(), packed);
            }
        }
        chunks * 16
    }

    /// `M` rows × 32 columns of `out` (+)= Σ over `count` pairs: `x` row `i`
    /// at `x[i·x_stride + p]`, the panel's pair `p` at `w[p·PANEL..]`; only
    /// the first `valid` columns are written; `first` starts the sums at 0.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const M: usize>(
        x: &[u32],
        x_stride: usize,
        w: &[u32],
        count: usize,
        out: *mut f32,
        stride: usize,
        valid: usize,
        first: bool,
    ) {
        debug_assert!(w.len() >= count * PANEL && x.len() >= (M - 1) * x_stride + count);
        let mut low = [_mm512_setzero_ps(); M];
        let mut high = [_mm512_setzero_ps(); M];
        let (x, w) = (x.as_ptr(), w.as_ptr());
        for p in 0..count {
            // SAFETY: within the panel block and the rows of x (debug-checked above).
            unsafe {
                let w_low: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(p * PANEL).cast()));
                let w_high: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(p * PANEL + 16).cast()));
                for i in 0..M {
                    let xs: __m512bh = std::mem::transmute(_mm512_set1_epi32(*x.add(i * x_stride + p) as i32));
                    low[i] = _mm512_dpbf16_ps(low[i], xs, w_low);
                    high[i] = _mm512_dpbf16_ps(high[i], xs, w_high);
                }
            }
        }
        let mask_low: __mmask16 = if valid >= 16 { 0xffff } else { ((1u32 << valid) - 1) as __mmask16 };
        let mask_high: __mmask16 = if valid >= 32 { 0xffff } else { ((1u32 << valid.saturating_sub(16)) - 1) as __mmask16 };
        for i in 0..M {
            // SAFETY: row i's first `valid` cells of this tile.
            unsafe {
                let row = out.add(i * stride);
                let (mut a, mut b) = (low[i], high[i]);
                if !first {
                    a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(mask_low, row));
                    b = _mm512_add_ps(b, _mm512_maskz_loadu_ps(mask_high, row.add(16)));
                }
                _mm512_mask_storeu_ps(row, mask_low, a);
                _mm512_mask_storeu_ps(row.add(16), mask_high, b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2011) as f32 / 1005.5 - 1.0 + 1e-3 * ((i % 7) as f32)).collect()
    }

    /// The direct computation the kernels must equal: bf16-rounded inputs,
    /// exact products, f64 sums; and Σ|x·w|, which bounds f32 rounding.
    fn direct(x: &[f32], w: &[bf16], rows: usize, inputs: usize, outputs: usize) -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(rows * outputs);
        for r in 0..rows {
            for o in 0..outputs {
                let (mut sum, mut size) = (0f64, 0f64);
                for i in 0..inputs {
                    let term = f64::from(round_to_bf16(x[r * inputs + i])) * f64::from(w[o * inputs + i].to_f32());
                    sum += term;
                    size += term.abs();
                }
                out.push((sum, size));
            }
        }
        out
    }

    #[test]
    fn every_kernel_on_this_cpu_equals_the_direct_product_of_the_rounded_inputs() {
        let kernels = Bf16Kernel::available();
        eprintln!("bf16 kernels on this CPU: {:?}", kernels.iter().map(|k| k.name()).collect::<Vec<_>>());
        // Odd inputs (a half-empty last pair), outputs past a panel and a
        // task block, rows past a tile and a row block, inputs past a pair block.
        for &(rows, inputs, outputs) in
            &[(1, 1, 1), (3, 5, 7), (13, 33, 65), (25, 257, 100), (241, 96, 200), (7, 300, 1100), (250, 41, 4130), (2, 0, 3), (0, 8, 8)]
        {
            let x = values(rows * inputs, 1);
            let w: Vec<bf16> = values(outputs * inputs, 2).into_iter().map(bf16::from_f32).collect();
            let bias = values(outputs, 3);
            let want = direct(&x, &w, rows, inputs, outputs);
            for &kernel in &kernels {
                let packed = PackedBf16::new(w.clone(), outputs, inputs, kernel).unwrap();
                assert_eq!(packed.to_f32(), w.iter().map(|v| v.to_f32()).collect::<Vec<_>>(), "{kernel:?} layout round trip");
                for with_bias in [false, true] {
                    let mut out = vec![f32::NAN; rows * outputs];
                    linear(&x, &packed, with_bias.then_some(bias.as_slice()), rows, &mut out).unwrap();
                    for (cell, (&got, &(sum, size))) in out.iter().zip(&want).enumerate() {
                        let want = sum + if with_bias { f64::from(bias[cell % outputs]) } else { 0.0 };
                        let tolerance = 1e-6 * (size + 1.0);
                        assert!(
                            (f64::from(got) - want).abs() <= tolerance,
                            "{kernel:?} {rows}×{inputs}×{outputs} cell {cell}: {got} vs {want} (±{tolerance:e})"
                        );
                    }
                    // Into a new (not zeroed) vector: the same bits.
                    let fresh = linear_to_vec(&x, &packed, with_bias.then_some(bias.as_slice()), rows).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&fresh), bits(&out), "{kernel:?} {rows}×{inputs}×{outputs} linear_to_vec");
                }
            }
        }
    }

    #[test]
    fn inputs_are_rounded_to_bf16_not_kept_in_f32() {
        // 1 + 2⁻¹⁰ is not a bf16 (8 bits of mantissa): it rounds to 1.
        let x = vec![1.0 + 1.0 / 1024.0; 4];
        let w = vec![bf16::ONE; 4];
        for kernel in Bf16Kernel::available() {
            let packed = PackedBf16::new(w.clone(), 1, 4, kernel).unwrap();
            let mut out = [0f32];
            linear(&x, &packed, None, 1, &mut out).unwrap();
            assert_eq!(out[0], 4.0, "{kernel:?}");
        }
        assert_eq!(round_to_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0, "ties go to even");
    }

    #[test]
    fn bad_lengths_are_errors() {
        let packed = PackedBf16::new(vec![bf16::ONE; 6], 2, 3, Bf16Kernel::Widened).unwrap();
        let mut out = [0f32; 4];
        assert_eq!(linear(&[0.0; 5], &packed, None, 2, &mut out).unwrap_err(), Bf16Error::Length { what: "input", got: 5, expected: 6 });
        assert_eq!(
            linear(&[0.0; 6], &packed, Some(&[0.0]), 2, &mut out).unwrap_err(),
            Bf16Error::Length { what: "bias", got: 1, expected: 2 }
        );
        assert!(PackedBf16::new(vec![bf16::ONE; 5], 2, 3, Bf16Kernel::Widened).is_err());
        assert_eq!(packed.row(1), Some(vec![1.0; 3]));
        assert_eq!(packed.row(2), None);
    }
}
