//! Finding and opening a checkpoint's safetensors files.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::CheckpointError;

/// The safetensors files of `dir`: `model.safetensors`, or the shards listed
/// in `model.safetensors.index.json`. Pickle (`.bin`) weights are refused.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|source| CheckpointError::Io { path: index.display().to_string(), source })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| CheckpointError::Weights { path: index.display().to_string(), message: format!("not valid JSON: {e}") })?;
        let map = value.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| CheckpointError::Weights {
            path: index.display().to_string(),
            message: "field `weight_map` is missing".into(),
        })?;
        let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
        files.sort();
        files.dedup();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.exists()) {
            return Err(CheckpointError::Weights {
                path: index.display().to_string(),
                message: format!("lists {} which does not exist", missing.display()),
            });
        }
        return Ok(paths);
    }
    let has_pickle = dir.join("pytorch_model.bin").exists() || dir.join("pytorch_model.bin.index.json").exists();
    let message = if has_pickle {
        "holds only pickle weights (pytorch_model.bin), which whence does not load; convert them to safetensors (e.g. `model.save_pretrained(dir, safe_serialization=True)` in transformers)"
    } else {
        "has no model.safetensors nor model.safetensors.index.json"
    };
    Err(CheckpointError::Weights { path: dir.display().to_string(), message: message.into() })
}

/// A VarBuilder over the checkpoint's weights, converting them to `dtype` on load.
pub fn open_weights(dir: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>, CheckpointError> {
    let files = safetensors_files(dir)?;
    // Validate each file's header first, so a truncated file is named.
    for file in &files {
        let bytes = std::fs::read(file).map_err(|source| CheckpointError::Io { path: file.display().to_string(), source })?;
        safetensors_header_ok(&bytes).map_err(|message| CheckpointError::Weights { path: file.display().to_string(), message })?;
    }
    // SAFETY: the files are memory-mapped read-only; whence does not modify
    // them while scoring (as for every mmap of weights, another process must
    // not truncate them meanwhile).
    unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
        .map_err(|e| CheckpointError::Weights { path: dir.display().to_string(), message: e.to_string() })
}

/// Checks that a safetensors file's header parses and its data fits the file.
fn safetensors_header_ok(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 {
        return Err(format!("truncated safetensors file ({} bytes)", bytes.len()));
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header_end = 8usize
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| format!("truncated safetensors file: header of {header_len} bytes but the file has {} bytes", bytes.len()))?;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..header_end]).map_err(|e| format!("safetensors header is not valid JSON: {e}"))?;
    let data_len = bytes.len() - header_end;
    if let Some(tensors) = header.as_object() {
        for (name, info) in tensors {
            if name == "__metadata__" {
                continue;
            }
            let end = info.get("data_offsets").and_then(|o| o.get(1)).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
            if end > data_len {
                return Err(format!(
                    "truncated safetensors file: tensor `{name}` ends at byte {end} of data but only {data_len} bytes remain"
                ));
            }
        }
    }
    Ok(())
}
