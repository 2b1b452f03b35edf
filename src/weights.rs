//! Weight export and import: burn's own burnpack format and `.safetensors` with PyTorch names.
//!
//! Every parameter is read back with `into_data_async` first (burn's `into_record` reads
//! synchronously, which panics on WebGPU), then serialised on the CPU. Import checks every
//! name and shape before anything replaces the model's tensors.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::DType;

use crate::model::{named_tensors, ResNet9};
use crate::train::TrainError;

/// Everything that can be wrong with a weights file.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsError {
    Format(String),
    Missing(Vec<String>),
    Unexpected(Vec<String>),
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    DType { name: String, found: String },
}

impl std::fmt::Display for WeightsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightsError::Format(e) => write!(f, "not a weights file this app can read: {e}"),
            WeightsError::Missing(n) => write!(f, "weights file lacks: {}", n.join(", ")),
            WeightsError::Unexpected(n) => write!(f, "weights file holds unknown tensors: {}", n.join(", ")),
            WeightsError::Shape { name, expected, found } => {
                write!(f, "{name}: shape {found:?} in the file, {expected:?} in the model")
            }
            WeightsError::DType { name, found } => write!(f, "{name}: dtype {found}, expected F32"),
        }
    }
}

impl std::error::Error for WeightsError {}

/// A model's tensors by burn path (`layer1.bn.gamma`), read back from the device.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub width: f64,
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

/// Reads every tensor of the model back asynchronously.
pub async fn snapshot(model: &ResNet9) -> Result<Snapshot, TrainError> {
    let tensors = crate::model::read_tensors(named_tensors(model)).await.map_err(TrainError::Device)?;
    let width = tensors
        .iter()
        .find(|(p, _, _)| p == "prep.conv.weight")
        .and_then(|(_, s, _)| s.first().map(|&c| c as f64 / 64.0))
        .unwrap_or(1.0);
    Ok(Snapshot { width, tensors })
}

/// Named F32 tensors as burnpack bytes, with string metadata (also the optimiser's momentum).
pub fn tensors_to_burnpack(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &[(&str, &str)],
) -> Result<Vec<u8>, WeightsError> {
    let tensors = tensors
        .iter()
        .map(|(name, shape, values)| {
            let (bytes, shape, dtype) = TensorData::new(values.clone(), shape.clone()).into_parts();
            burn_pack::Tensor::new(name.clone(), dtype, shape, None, bytes)
        })
        .collect();
    let mut writer = burn_pack::Writer::new(tensors);
    for (key, value) in metadata {
        writer = writer.with_metadata(key, value);
    }
    let bytes = writer.into_bytes().map_err(|e| WeightsError::Format(e.to_string()))?;
    Ok(bytes.to_vec())
}

/// The metadata and F32 tensors of burnpack bytes; any other dtype is refused.
#[allow(clippy::type_complexity)]
pub fn tensors_from_burnpack(
    bytes: &[u8],
) -> Result<(BTreeMap<String, String>, Vec<(String, Vec<usize>, Vec<f32>)>), WeightsError> {
    let reader = burn_pack::Reader::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| WeightsError::Format(e.to_string()))?;
    let metadata = reader.metadata().clone();
    let mut tensors = Vec::new();
    for t in reader.into_tensors().map_err(|e| WeightsError::Format(e.to_string()))? {
        let (name, dtype, shape, _id, bytes) = t.into_parts().map_err(|e| WeightsError::Format(e.to_string()))?;
        if dtype != DType::F32 {
            return Err(WeightsError::DType { name, found: format!("{dtype:?}") });
        }
        let data = TensorData::from_bytes(bytes, shape.clone(), dtype);
        let values = data.try_into_vec::<f32>().map_err(|e| WeightsError::Format(format!("{e:?}")))?;
        tensors.push((name, shape.to_vec(), values));
    }
    Ok((metadata, tensors))
}

/// The PyTorch name of a burn path, for a model laid out as `nn.Sequential`s (see the README):
/// conv-BN blocks are `(conv, bn, relu)` = `.0`, `.1`; conv-pool-BN blocks are
/// `(conv, pool, bn, relu)` = `.0`, `.2`; BatchNorm `gamma`/`beta` are `weight`/`bias`.
pub fn torch_name(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    let leaf = |l: &str| match l {
        "gamma" => "weight".to_string(),
        "beta" => "bias".to_string(),
        other => other.to_string(),
    };
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let p = parts[i];
        match p {
            "conv" => out.push("0".into()),
            "bn" => {
                let pooled = matches!(out.first().map(String::as_str), Some("layer1" | "layer2" | "layer3"));
                out.push(if pooled { "2".into() } else { "1".into() });
            }
            _ if i + 1 == parts.len() => out.push(leaf(p)),
            _ => out.push(p.to_string()),
        }
        i += 1;
    }
    out.join(".")
}

impl Snapshot {
    /// Serialises to burn's burnpack format (`.bpk`), loadable with `Module::load_file`.
    pub fn to_burnpack(&self) -> Result<Vec<u8>, WeightsError> {
        tensors_to_burnpack(&self.tensors, &[("model", "cifar10-webgpu ResNet-9"), ("width", &self.width.to_string())])
    }

    /// Parses a burnpack file.
    pub fn from_burnpack(bytes: &[u8]) -> Result<Self, WeightsError> {
        let (metadata, tensors) = tensors_from_burnpack(bytes)?;
        let width = metadata.get("width").and_then(|w| w.parse::<f64>().ok());
        Self::with_width(width, tensors)
    }

    /// Uses the width stored in the file, else infers it from the first convolution.
    fn with_width(
        width: Option<f64>,
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    ) -> Result<Self, WeightsError> {
        let inferred = tensors
            .iter()
            .find(|(n, _, _)| n == "prep.conv.weight")
            .and_then(|(_, s, _)| s.first().map(|&c| c as f64 / 64.0))
            .ok_or_else(|| WeightsError::Missing(vec!["prep.conv.weight".to_string()]))?;
        let width = width.filter(|w| w.is_finite() && *w > 0.0 && *w <= 4.0).unwrap_or(inferred);
        Ok(Self { width, tensors })
    }

    /// Serialises to `.safetensors` with PyTorch names and layouts (`fc.weight` is `[out, in]`).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, WeightsError> {
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (path, shape, values) in &self.tensors {
            let (shape, values) = if path == "fc.weight" {
                transpose(shape, values)
            } else {
                (shape.clone(), values.clone())
            };
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            owned.push((torch_name(path), shape, bytes));
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
            .iter()
            .map(|(name, shape, bytes)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| WeightsError::Format(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        meta.insert("width".to_string(), self.width.to_string());
        safetensors::serialize(views, Some(meta)).map_err(|e| WeightsError::Format(e.to_string()))
    }

    /// Parses `.safetensors` with PyTorch names (extra `num_batches_tracked` entries are ignored).
    pub fn from_safetensors(bytes: &[u8], template: &ResNet9) -> Result<Self, WeightsError> {
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| WeightsError::Format(e.to_string()))?;
        let by_torch: BTreeMap<String, String> = named_tensors(template)
            .into_iter()
            .map(|(p, _)| (torch_name(&p), p))
            .collect();
        let mut tensors = Vec::new();
        let mut unexpected = Vec::new();
        for (name, view) in st.tensors() {
            if name.ends_with("num_batches_tracked") {
                continue;
            }
            let Some(path) = by_torch.get(&name) else {
                unexpected.push(name);
                continue;
            };
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(WeightsError::DType { name, found: format!("{:?}", view.dtype()) });
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let shape = view.shape().to_vec();
            let (shape, values) = if path == "fc.weight" && shape.len() == 2 {
                transpose(&shape, &values)
            } else {
                (shape, values)
            };
            tensors.push((path.clone(), shape, values));
        }
        if !unexpected.is_empty() {
            unexpected.sort();
            return Err(WeightsError::Unexpected(unexpected));
        }
        let width = safetensors::SafeTensors::read_metadata(bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().as_ref().and_then(|m| m.get("width").cloned()))
            .and_then(|w| w.parse::<f64>().ok());
        Self::with_width(width, tensors)
    }

    /// Builds a model of the right width on `device` holding these weights, checking every name
    /// and shape.
    pub fn into_model(self, device: &Device) -> Result<ResNet9, WeightsError> {
        self.check_size(self.width)?;
        apply(ResNet9::new(self.width, device), self.tensors)
    }

    /// Refuses, before a model of `width` is built, a file too small to fill it: the width
    /// comes from the file (metadata, or the first convolution's channels), and a few bytes
    /// claiming width 100 would otherwise allocate a 65-billion-parameter model. Memory stays
    /// proportional to the file.
    pub fn check_size(&self, width: f64) -> Result<(), WeightsError> {
        if !(width.is_finite() && width > 0.0 && width <= 4.0) {
            return Err(WeightsError::Format(format!("width {width} is outside (0, 4]")));
        }
        let held: usize = self.tensors.iter().map(|(_, _, v)| v.len()).sum();
        let needed = min_weights(width);
        if held < needed {
            return Err(WeightsError::Format(format!(
                "holds {held} values; a width-{width} ResNet-9 has at least {needed}"
            )));
        }
        Ok(())
    }
}

/// The convolution and linear weights of a ResNet-9 of `width` alone: a lower bound on the
/// values a file for it holds (see `ResNet9::new`).
fn min_weights(width: f64) -> usize {
    let [c0, c1, c2, c3] = crate::model::channels(width);
    9 * (3 * c0 + c0 * c1 + 2 * c1 * c1 + c1 * c2 + c2 * c3 + 2 * c3 * c3) + 10 * c3
}

fn transpose(shape: &[usize], values: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (r, c) = (shape[0], shape[1]);
    let mut out = vec![0f32; values.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = values[i * c + j];
        }
    }
    (vec![c, r], out)
}

/// Replaces every tensor of `model` by the named values, or explains what does not fit.
pub fn apply(model: ResNet9, tensors: Vec<(String, Vec<usize>, Vec<f32>)>) -> Result<ResNet9, WeightsError> {
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = tensors.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
    let (mut missing, mut shape_error) = (Vec::new(), None);
    let model = crate::model::replace_params(model, |name, expected| match tensors.remove(name) {
        None => {
            missing.push(name.to_string());
            None
        }
        Some((shape, _)) if shape != expected => {
            let (name, expected) = (name.to_string(), expected.to_vec());
            shape_error.get_or_insert(WeightsError::Shape { name, expected, found: shape });
            None
        }
        Some((_, values)) => Some(values),
    });
    if let Some(e) = shape_error {
        return Err(e);
    }
    if !missing.is_empty() {
        return Err(WeightsError::Missing(missing));
    }
    if !tensors.is_empty() {
        return Err(WeightsError::Unexpected(tensors.into_keys().collect()));
    }
    Ok(model)
}

/// Reads weights in either format, told apart by content (safetensors starts with a
/// little-endian header length followed by `{`).
pub fn import(bytes: &[u8], device: &Device) -> Result<ResNet9, WeightsError> {
    let looks_safetensors = bytes.len() > 9 && bytes[8] == b'{';
    let snapshot = if looks_safetensors {
        // Names come from a tiny template; the width comes from the file.
        let probe = ResNet9::new(0.0625, device);
        Snapshot::from_safetensors(bytes, &probe)?
    } else {
        Snapshot::from_burnpack(bytes)?
    };
    snapshot.into_model(device)
}
