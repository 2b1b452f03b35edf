//! A model's tensors as one flat vector, in the order burn visits them (`model::named_tensors`):
//! the weights a helper loads, and the gradients (with the running statistics in the place of
//! the buffers, which have none) it answers. Replicas of one width share the layout; their
//! parameter ids differ, so nothing is matched by id across replicas, only by position.

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::model::{is_buffer, named_tensors, read_tensors, ResNet9, TensorAny};

/// One tensor of the layout.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub dims: Vec<usize>,
    /// A BatchNorm running statistic (no gradient).
    pub buffer: bool,
    /// The parameter's id in the model the layout was taken from.
    pub id: ParamId,
    pub offset: usize,
    pub len: usize,
}

/// The flat order of one model's tensors.
#[derive(Clone, Debug)]
pub struct Layout {
    pub entries: Vec<Entry>,
    pub total: usize,
}

/// Collects (path, id, dims) in visiting order.
struct Ids {
    path: Vec<String>,
    out: Vec<(String, ParamId, Vec<usize>)>,
}

impl burn::module::ModuleVisitor for Ids {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out.push((self.path.join("."), param.id, param.lazy_shape().to_vec()));
    }
}

impl Layout {
    pub fn of(model: &ResNet9) -> Self {
        let mut ids = Ids { path: Vec::new(), out: Vec::new() };
        model.visit(&mut ids);
        let mut offset = 0;
        let entries = ids
            .out
            .into_iter()
            .map(|(name, id, dims)| {
                let len = dims.iter().product();
                let e = Entry { buffer: is_buffer(&name), name, dims, id, offset, len };
                offset += len;
                e
            })
            .collect();
        Self { entries, total: offset }
    }

    /// Values of trainable parameters (the rest are running statistics).
    pub fn parameters(&self) -> usize {
        self.entries.iter().filter(|e| !e.buffer).map(|e| e.len).sum()
    }

    /// Every tensor of `model` (weights and running statistics), read back in one read.
    pub async fn read(&self, model: &ResNet9) -> Result<Vec<f32>, String> {
        let tensors = read_tensors(named_tensors(model)).await?;
        let flat: Vec<f32> = tensors.into_iter().flat_map(|(_, _, v)| v).collect();
        if flat.len() != self.total {
            return Err(format!("the model holds {} values, its layout {}", flat.len(), self.total));
        }
        Ok(flat)
    }

    /// `model` with every tensor replaced by `flat`'s (ids kept, so an optimiser's momentum
    /// stays keyed to them).
    pub fn load(&self, model: ResNet9, flat: &[f32]) -> Result<ResNet9, String> {
        self.overwrite(model, flat, false)
    }

    /// `model` with its running statistics replaced by `flat`'s (a full-layout vector), its
    /// parameters untouched.
    pub fn load_buffers(&self, model: ResNet9, flat: &[f32]) -> Result<ResNet9, String> {
        self.overwrite(model, flat, true)
    }

    fn overwrite(&self, model: ResNet9, flat: &[f32], buffers_only: bool) -> Result<ResNet9, String> {
        if flat.len() != self.total {
            return Err(format!("{} values for a layout of {}", flat.len(), self.total));
        }
        crate::model::sync_running_stats(&model);
        let mut mapper = Overwrite { layout: self, flat, index: 0, buffers_only };
        Ok(model.map(&mut mapper))
    }

    /// The gradients of a step (parameters) and the model's running statistics (buffers), in
    /// one flat vector and one read. A parameter without a gradient reads as zeros.
    pub async fn read_gradients(&self, grads: &GradientsParams, model: &ResNet9) -> Result<Vec<f32>, String> {
        let device = model.fc.weight.val().device().without_autodiff();
        let running = named_tensors(model);
        let mut parts: Vec<(String, TensorAny)> = Vec::with_capacity(self.entries.len());
        for (e, (name, tensor)) in self.entries.iter().zip(running) {
            let part = if e.buffer {
                tensor
            } else {
                let grad = match e.dims.len() {
                    1 => grads.get::<1>(e.id).map(|g| g.reshape([e.len])),
                    2 => grads.get::<2>(e.id).map(|g| g.reshape([e.len])),
                    _ => grads.get::<4>(e.id).map(|g| g.reshape([e.len])),
                };
                TensorAny::R1(grad.unwrap_or_else(|| Tensor::zeros([e.len], &device)))
            };
            parts.push((name, part));
        }
        let read = read_tensors(parts).await?;
        Ok(read.into_iter().flat_map(|(_, _, v)| v).collect())
    }

    /// Gradients for `model`'s parameters (by this layout's ids) from a flat vector.
    pub fn gradients(&self, flat: &[f32], device: &Device) -> GradientsParams {
        let device = device.clone().without_autodiff();
        let mut grads = GradientsParams::new();
        for e in self.entries.iter().filter(|e| !e.buffer) {
            let values = flat[e.offset..e.offset + e.len].to_vec();
            match e.dims.len() {
                1 => grads.register(e.id, Tensor::<1>::from_data(TensorData::new(values, [e.len]), &device)),
                2 => grads.register(e.id, Tensor::<2>::from_data(TensorData::new(values, [e.dims[0], e.dims[1]]), &device)),
                _ => grads.register(
                    e.id,
                    Tensor::<4>::from_data(TensorData::new(values, [e.dims[0], e.dims[1], e.dims[2], e.dims[3]]), &device),
                ),
            }
        }
        grads
    }
}

struct Overwrite<'a> {
    layout: &'a Layout,
    flat: &'a [f32],
    index: usize,
    buffers_only: bool,
}

impl ModuleMapper for Overwrite<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(e) = self.layout.entries.get(self.index) else { return param };
        self.index += 1;
        if self.buffers_only && !e.buffer {
            return param;
        }
        let (id, device) = (param.id, param.lazy_device());
        let values = self.flat[e.offset..e.offset + e.len].to_vec();
        let tensor = Tensor::<D>::from_data(TensorData::new(values, e.dims.clone()), &device);
        param.transform_for_load(tensor, id)
    }
}
