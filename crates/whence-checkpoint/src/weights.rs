//! Finding and opening a checkpoint's safetensors files.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
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
///
/// Each tensor is read from its file when the model asks for it (a
/// positioned read into a buffer of its own, no memory map), so loading
/// holds the tensors built so far plus the one being read: a bf16
/// checkpoint loaded in bf16 peaks at about its size on disk, not twice it
/// (mapped pages of a memory map count as resident until it is dropped).
pub fn open_weights(dir: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>, CheckpointError> {
    let files = safetensors_files(dir)?;
    let backend = SafetensorsFiles::open(&files)?;
    Ok(VarBuilder::from_backend(Box::new(backend), dtype, device.clone()))
}

/// Where one tensor lies in its file.
#[derive(Debug, Clone)]
struct TensorEntry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte offsets in the file.
    start: u64,
    end: u64,
}

/// The tensors of a checkpoint's safetensors files, read on demand.
pub struct SafetensorsFiles {
    files: Vec<(PathBuf, std::sync::Mutex<std::fs::File>)>,
    tensors: std::collections::HashMap<String, TensorEntry>,
}

impl SafetensorsFiles {
    /// Opens `files` and reads their headers (checked: valid JSON, known
    /// dtypes, each tensor's bytes inside the file and of its shape's size).
    pub fn open(files: &[PathBuf]) -> Result<Self, CheckpointError> {
        let mut opened = Vec::with_capacity(files.len());
        let mut tensors = std::collections::HashMap::new();
        for (index, path) in files.iter().enumerate() {
            let io = |source| CheckpointError::Io { path: path.display().to_string(), source };
            let bad = |message: String| CheckpointError::Weights { path: path.display().to_string(), message };
            let mut file = std::fs::File::open(path).map_err(io)?;
            let size = file.metadata().map_err(io)?.len();
            let (header, data_start) = read_header(&mut file, size).map_err(bad)?;
            for (name, entry) in parse_header(&header, data_start, size).map_err(bad)? {
                tensors.insert(name, TensorEntry { file: index, ..entry });
            }
            opened.push((path.clone(), std::sync::Mutex::new(file)));
        }
        Ok(SafetensorsFiles { files: opened, tensors })
    }

    /// The names of all tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Reads tensor `name` in its stored dtype onto the CPU.
    pub fn read(&self, name: &str) -> candle_core::Result<Tensor> {
        let entry = self.tensors.get(name).ok_or_else(|| candle_core::Error::CannotFindTensor { path: name.to_string() }.bt())?;
        let (path, file) = &self.files[entry.file];
        let len = (entry.end - entry.start) as usize;
        let fail = |e: std::io::Error| candle_core::Error::Msg(format!("{}: cannot read tensor `{name}`: {e}", path.display()));
        let mut file = file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let shape = entry.shape.clone();
        macro_rules! read_as {
            ($t:ty) => {{
                let mut values: Vec<$t> = vec![<$t>::default(); len / std::mem::size_of::<$t>()];
                // SAFETY: a plain-old-data slice viewed as its bytes (same length in bytes).
                let bytes = unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), len) };
                read_at(&mut file, entry.start, bytes).map_err(fail)?;
                if cfg!(target_endian = "big") {
                    candle_core::bail!("safetensors data is little-endian; big-endian hosts are not supported");
                }
                Tensor::from_vec(values, shape, &Device::Cpu)
            }};
        }
        match entry.dtype {
            DType::F32 => read_as!(f32),
            DType::F16 => read_as!(half::f16),
            DType::BF16 => read_as!(half::bf16),
            DType::F64 => read_as!(f64),
            DType::I64 => read_as!(i64),
            DType::U32 => read_as!(u32),
            DType::U8 => read_as!(u8),
            other => candle_core::bail!("tensor `{name}` has dtype {other:?}, which whence does not load"),
        }
    }
}

fn read_at(file: &mut std::fs::File, offset: u64, bytes: &mut [u8]) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(bytes)
}

impl candle_nn::var_builder::SimpleBackend for SafetensorsFiles {
    fn get(&self, s: candle_core::Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let entry = self.tensors.get(name).ok_or_else(|| candle_core::Error::CannotFindTensor { path: name.to_string() }.bt())?;
        if entry.shape.as_slice() != s.dims() {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: entry.shape.clone().into(),
            }
            .bt());
        }
        self.get_unchecked(name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.read(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// A safetensors file's JSON header and the offset where its data starts.
fn read_header(file: &mut std::fs::File, size: u64) -> Result<(serde_json::Value, u64), String> {
    if size < 8 {
        return Err(format!("truncated safetensors file ({size} bytes)"));
    }
    let mut length = [0u8; 8];
    read_at(file, 0, &mut length).map_err(|e| e.to_string())?;
    let header_len = u64::from_le_bytes(length);
    let data_start = 8u64
        .checked_add(header_len)
        .filter(|&e| e <= size)
        .ok_or_else(|| format!("truncated safetensors file: header of {header_len} bytes but the file has {size} bytes"))?;
    let mut header = vec![0u8; header_len as usize];
    read_at(file, 8, &mut header).map_err(|e| e.to_string())?;
    let header = serde_json::from_slice(&header).map_err(|e| format!("safetensors header is not valid JSON: {e}"))?;
    Ok((header, data_start))
}

/// The tensors a header describes (`file` left 0), checked against the file size.
fn parse_header(header: &serde_json::Value, data_start: u64, size: u64) -> Result<Vec<(String, TensorEntry)>, String> {
    let tensors = header.as_object().ok_or("safetensors header is not a JSON object")?;
    let data_len = size - data_start;
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, info) in tensors {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| info.get(key).ok_or_else(|| format!("tensor `{name}` has no `{key}` in the header"));
        let dtype = match field("dtype")?.as_str() {
            Some("F32") => DType::F32,
            Some("F16") => DType::F16,
            Some("BF16") => DType::BF16,
            Some("F64") => DType::F64,
            Some("I64") => DType::I64,
            Some("U32") => DType::U32,
            Some("U8") | Some("BOOL") => DType::U8,
            other => return Err(format!("tensor `{name}` has dtype {other:?}; whence loads F32, F16, BF16, F64, I64, U32, U8")),
        };
        let shape: Vec<usize> = field("shape")?
            .as_array()
            .and_then(|dims| dims.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| format!("tensor `{name}` has a `shape` that is not a list of sizes"))?;
        let offsets: Vec<u64> = field("data_offsets")?
            .as_array()
            .and_then(|o| o.iter().map(serde_json::Value::as_u64).collect())
            .filter(|o: &Vec<u64>| o.len() == 2 && o[0] <= o[1])
            .ok_or_else(|| format!("tensor `{name}` has `data_offsets` that are not [begin, end]"))?;
        if offsets[1] > data_len {
            return Err(format!(
                "truncated safetensors file: tensor `{name}` ends at byte {} of data but only {data_len} bytes remain",
                offsets[1]
            ));
        }
        let expected = shape.iter().try_fold(dtype.size_in_bytes() as u64, |n, &d| n.checked_mul(d as u64));
        if expected != Some(offsets[1] - offsets[0]) {
            return Err(format!(
                "tensor `{name}` has {} bytes of data but its shape {shape:?} of {dtype:?} needs {}",
                offsets[1] - offsets[0],
                expected.map_or("more than 2⁶⁴".to_string(), |n| n.to_string())
            ));
        }
        entries.push((name.clone(), TensorEntry { file: 0, dtype, shape, start: data_start + offsets[0], end: data_start + offsets[1] }));
    }
    Ok(entries)
}
