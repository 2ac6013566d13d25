//! Scoring Hugging Face checkpoints in-process, on candle.
//!
//! - [`config`]: `config.json` with HF's field names (old and new rope keys);
//! - [`decoder`]: one memory-bounded decoder for Qwen2, Qwen3, Llama and
//!   Mistral, computing every position's next-token log-probability in one
//!   teacher-forced pass;
//! - [`generate`]: decoding with a KV cache, several continuations of one
//!   prompt in one batch (for `whence generate` and `whence serve`);
//! - [`attention`]: the fused CPU attention kernel (online softmax over
//!   tiles of keys, all query heads of a KV head together);
//! - [`bf16`]: bf16 matrix products with f32 accumulation (AVX512_BF16
//!   or widened to f32, chosen at run time);
//! - [`weights`]: safetensors loading (single or sharded, f32/bf16/f16).

pub mod attention;
pub mod bf16;
pub mod config;
pub mod decoder;
pub mod generate;
pub mod kernels;
pub mod linear;
mod parallel;
pub mod ranks;
pub mod scorer;
pub mod weights;

pub use config::{Architecture, Config, SUPPORTED_ARCHITECTURES};
pub use decoder::{Decoder, Ops, PromptRequest};
pub use generate::{Continuation, NextToken, PromptJob};
pub use scorer::{device, CheckpointOptions, CheckpointScorer, TemplateMode};
pub use whence_encode::Encoder;

/// Makes glibc keep and reuse large freed blocks instead of returning them
/// to the kernel: a forward pass allocates and frees tensors of tens of MB
/// per layer, and fresh mappings cost page faults and zeroing (about 8% of a
/// profile at 512 tokens). Process-wide, so binaries call it, not the library;
/// a no-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Returns the memory freed so far to the kernel (glibc's `malloc_trim`,
/// which also releases whole free pages in the middle of the heap). With
/// [`tune_allocator`]'s settings nothing is returned on its own, and the
/// holes that loading leaves between the weights it keeps (each tensor is
/// read, fused, packed, and the copies freed) stayed resident: a 15.2 GB
/// bf16 checkpoint of the 7B shape held 17.9 GB after loading. The decoder
/// calls it after each layer it loads. A no-op off glibc.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What can go wrong with a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("{path}: {message}")]
    Weights { path: String, message: String },
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Encoder(#[from] whence_encode::EncoderError),
}
