//! The seed's custom ResNet-9 (6,573,130 parameters at width 1.0).
//!
//! Field names mirror a PyTorch `nn.Sequential` layout so the `.safetensors` export can use
//! PyTorch names (see `weights.rs` and the README).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, PadMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// conv 3x3 (pad 1, no bias) -> BatchNorm -> ReLU.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

fn conv3x3(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

/// How the 3x3 convolutions are computed. burn's f32 convolution on wgpu without cooperative
/// matrices runs a direct kernel; `Im2col` spells the same arithmetic as shifted copies of the
/// input and one batched matrix product, so the forward and both backward passes become
/// matmuls (9x the input's memory per layer, kept for the backward pass). A process-wide
/// implementation choice, like the backend: weights, results and exports are the same.
/// `Gemm` is our implicit-GEMM kernel (`crate::kernels`), on CubeCL devices only; `Direct` our
/// blocked direct CPU kernel (`crate::kernels::direct`), on burn-flex only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgorithm {
    Burn,
    Im2col,
    Gemm,
    Direct,
}

impl ConvAlgorithm {
    /// Every algorithm, the default first; not all run on every device (see `available`).
    pub const ALL: [ConvAlgorithm; 4] =
        [ConvAlgorithm::Burn, ConvAlgorithm::Im2col, ConvAlgorithm::Gemm, ConvAlgorithm::Direct];

    /// The name used by `--conv` and `?conv=`.
    pub fn name(self) -> &'static str {
        match self {
            ConvAlgorithm::Burn => "burn",
            ConvAlgorithm::Im2col => "im2col",
            ConvAlgorithm::Gemm => "gemm",
            ConvAlgorithm::Direct => "direct",
        }
    }

    /// Whether this algorithm runs on `device`. `Gemm` needs a CubeCL device (WebGPU, or
    /// native wgpu/Vulkan), `Direct` burn's `flex` CPU backend; elsewhere each is unavailable,
    /// not emulated.
    pub fn available(self, device: &Device) -> bool {
        match self {
            ConvAlgorithm::Burn | ConvAlgorithm::Im2col => true,
            ConvAlgorithm::Gemm => crate::kernels::gemm_available(device),
            ConvAlgorithm::Direct => crate::kernels::direct_available(device),
        }
    }

    /// The algorithms that run on `device`, the default first.
    pub fn available_on(device: &Device) -> Vec<ConvAlgorithm> {
        Self::ALL.into_iter().filter(|a| a.available(device)).collect()
    }

    /// The algorithm of a `--conv` / `?conv=` value.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Index into `ConvAlgorithm::ALL`.
static CONV: AtomicU8 = AtomicU8::new(0);

/// Chooses the convolution algorithm for every model of this process.
pub fn set_conv_algorithm(algorithm: ConvAlgorithm) {
    let index = ConvAlgorithm::ALL.iter().position(|&a| a == algorithm).unwrap_or(0);
    CONV.store(index as u8, Ordering::Relaxed);
}

/// The convolution algorithm in use.
pub fn conv_algorithm() -> ConvAlgorithm {
    ConvAlgorithm::ALL.get(CONV.load(Ordering::Relaxed) as usize).copied().unwrap_or(ConvAlgorithm::Burn)
}

/// A 3x3, stride 1, pad 1, bias-free convolution as im2col + matmul: the 9 shifted views of the
/// zero-padded input, laid out `[n, c_in * 9, h * w]` in the weight's `(c_in, ky, kx)` order,
/// multiplied by the weight seen as `[c_out, c_in * 9]`.
pub fn conv3x3_im2col(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let c_out = weight.dims()[0];
    let padded = x.pad((1, 1, 1, 1), PadMode::Constant(0.0));
    let shifted: Vec<Tensor<4>> = (0..9)
        .map(|k| {
            let (dy, dx) = (k / 3, k % 3);
            padded.clone().slice([0..n, 0..c, dy..dy + h, dx..dx + w]).reshape([n, c, 1, h * w])
        })
        .collect();
    let columns = Tensor::cat(shifted, 2).reshape([n, c * 9, h * w]);
    weight.reshape([1, c_out, c * 9]).matmul(columns).reshape([n, c_out, h, w])
}

/// The recipe's convolution (3x3, stride 1, pad 1, no bias) computed by `algorithm`: what
/// every layer runs, and what the GPU self-test checks.
pub fn conv3x3_with(algorithm: ConvAlgorithm, x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    match algorithm {
        ConvAlgorithm::Burn => {
            burn::tensor::module::conv2d(x, weight, None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1))
        }
        ConvAlgorithm::Im2col => conv3x3_im2col(x, weight),
        ConvAlgorithm::Direct => crate::kernels::conv3x3_direct(x, weight),
        #[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
        ConvAlgorithm::Gemm => crate::kernels::conv3x3_gemm(x, weight),
        // No CubeCL backend in this build: callers check `available` first; running another
        // algorithm under this name would make comparisons and benchmarks lie.
        #[cfg(not(any(target_arch = "wasm32", feature = "wgpu")))]
        ConvAlgorithm::Gemm => panic!("the gemm convolution needs a CubeCL device (build with --features wgpu)"),
    }
}

fn conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv3x3_with(conv_algorithm(), x, conv.weight.val())
}

/// burn's `BatchNorm` with PyTorch's running statistics. In training mode burn 0.22 feeds the
/// *biased* batch variance into `running_var`; PyTorch (and so the recipe) feeds the unbiased
/// one, `n / (n - 1)` times larger (n = batch x height x width), which the PyTorch fixture
/// caught: 0.4% at batch 16 on a 4x4 map, more for smaller batches. Same parameters, same
/// paths, so exports and imports are unchanged; `tests/engine.rs` keeps a test that fails if
/// burn changes its behaviour (then this override would correct twice).
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if !(x.device().is_autodiff() && bn.training.is_enabled()) {
        return bn.forward(x);
    }
    let [n, _, h, w] = x.dims();
    let count = (n * h * w) as f64;
    let unbias = if count > 1.0 { count / (count - 1.0) } else { 1.0 };
    let result = burn::tensor::module::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon);
    let m = bn.momentum;
    let mean = bn.running_mean.value_sync().mul_scalar(1.0 - m) + result.mean.detach().mul_scalar(m);
    let var = bn.running_var.value_sync().mul_scalar(1.0 - m) + result.variance.detach().mul_scalar(m * unbias);
    bn.running_mean.update(mean.detach());
    bn.running_var.update(var.detach());
    result.output
}

impl ConvBn {
    pub fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        Self { conv: conv3x3(c_in, c_out, device), bn: BatchNormConfig::new(c_out).init(device) }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        Relu::new().forward(batch_norm(&self.bn, conv(&self.conv, x)))
    }
}

/// conv 3x3 -> max-pool 2 -> BatchNorm -> ReLU (the recipe pools before normalising).
#[derive(Module, Debug)]
pub struct ConvPoolBn {
    pub conv: Conv2d,
    pub pool: MaxPool2d,
    pub bn: BatchNorm,
}

impl ConvPoolBn {
    pub fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        Self {
            conv: conv3x3(c_in, c_out, device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            bn: BatchNormConfig::new(c_out).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv(&self.conv, x);
        // With our CPU convolutions, our CPU pool too (burn-flex's is a generic scalar loop).
        let pooled = if conv_algorithm() == ConvAlgorithm::Direct && crate::kernels::direct_available(&x.device()) {
            crate::kernels::max_pool2x2_direct(x)
        } else {
            self.pool.forward(x)
        };
        Relu::new().forward(batch_norm(&self.bn, pooled))
    }
}

/// Replaces float parameters by name: `f(path, shape)` gives the new values (of that shape),
/// or `None` to keep the parameter. Each keeps its id: an optimiser's momentum stays keyed by it.
pub fn replace_params<M: Module>(module: M, f: impl FnMut(&str, &[usize]) -> Option<Vec<f32>>) -> M {
    module.map(&mut ReplaceParams { path: Vec::new(), f })
}

struct ReplaceParams<F> {
    path: Vec<String>,
    f: F,
}

impl<F: FnMut(&str, &[usize]) -> Option<Vec<f32>>> ModuleMapper for ReplaceParams<F> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape = param.lazy_shape().to_vec();
        match (self.f)(&self.path.join("."), &shape) {
            None => param,
            Some(values) => {
                let (id, device) = (param.id, param.lazy_device());
                param.transform_for_load(Tensor::<D>::from_data(TensorData::new(values, shape), &device), id)
            }
        }
    }
}

/// The network. `res1`/`res2` hold the two conv-BN-ReLU of each residual branch.
#[derive(Module, Debug)]
pub struct ResNet9 {
    pub prep: ConvBn,
    pub layer1: ConvPoolBn,
    pub res1: Vec<ConvBn>,
    pub layer2: ConvPoolBn,
    pub layer3: ConvPoolBn,
    pub res2: Vec<ConvBn>,
    pub pool: MaxPool2d,
    pub fc: Linear,
}

/// Channel counts at width 1.0: prep, layer1, layer2, layer3.
pub const BASE_CHANNELS: [usize; 4] = [64, 128, 256, 512];

/// Channel counts for a width multiplier (at least 1 channel each).
pub fn channels(width: f64) -> [usize; 4] {
    BASE_CHANNELS.map(|c| ((c as f64 * width).round() as usize).max(1))
}

/// A BatchNorm whose running statistics no longer share storage with the original's.
fn unshared_bn(bn: &BatchNorm) -> BatchNorm {
    let mut copy = bn.clone();
    // `value()` may lag one update behind (see `named_tensors`); `value_sync()` does not.
    copy.running_mean = RunningState::new(bn.running_mean.value_sync());
    copy.running_var = RunningState::new(bn.running_var.value_sync());
    copy
}

impl ConvBn {
    fn checkpoint(&self) -> Self {
        Self { conv: self.conv.clone(), bn: unshared_bn(&self.bn) }
    }
}

impl ConvPoolBn {
    fn checkpoint(&self) -> Self {
        Self { conv: self.conv.clone(), pool: self.pool.clone(), bn: unshared_bn(&self.bn) }
    }
}

/// Bytes of the largest buffer of a training step with the process's convolution algorithm
/// (see [`largest_activation_bytes_with`]).
pub fn largest_activation_bytes(batch: usize, width: f64) -> u64 {
    largest_activation_bytes_with(conv_algorithm(), batch, width)
}

/// Bytes of the largest buffer of a training pass over `batch` images: the first layer1
/// convolution's output, `batch x c1 x 32 x 32` floats, before pooling; with im2col
/// convolutions, that layer's column matrix, `batch x (c0 x 9) x 32 x 32`. Checked against the
/// adapter's `maxStorageBufferBindingSize` before training (`micro::micro_batches` splits a
/// batch that exceeds it).
pub fn largest_activation_bytes_with(algorithm: ConvAlgorithm, batch: usize, width: f64) -> u64 {
    let [c0, c1, _, _] = channels(width);
    let per_pixel = match algorithm {
        ConvAlgorithm::Burn | ConvAlgorithm::Gemm | ConvAlgorithm::Direct => c1,
        ConvAlgorithm::Im2col => c1.max(c0 * 9),
    };
    batch as u64 * per_pixel as u64 * 32 * 32 * 4
}

/// The largest batch whose activations fit in one storage binding of `limit` bytes.
pub fn max_batch_for(limit: u64, width: f64) -> usize {
    (limit / largest_activation_bytes(1, width).max(1)) as usize
}

impl ResNet9 {
    /// Builds the net with channels scaled by `width` (1.0 is the recipe).
    pub fn new(width: f64, device: &Device) -> Self {
        let [c0, c1, c2, c3] = channels(width);
        Self {
            prep: ConvBn::new(3, c0, device),
            layer1: ConvPoolBn::new(c0, c1, device),
            res1: vec![ConvBn::new(c1, c1, device), ConvBn::new(c1, c1, device)],
            layer2: ConvPoolBn::new(c1, c2, device),
            layer3: ConvPoolBn::new(c2, c3, device),
            res2: vec![ConvBn::new(c3, c3, device), ConvBn::new(c3, c3, device)],
            pool: MaxPool2dConfig::new([4, 4]).init(),
            fc: LinearConfig::new(c3, 10).init(device),
        }
    }

    /// The net with initial weights drawn from `seed` alone: the same numbers on every backend,
    /// whatever else the process draws at the same time. burn's initialisers are lazy and draw
    /// from the backend's process-wide RNG when a parameter is first read, so `device.seed(s)`
    /// then `new` gives other weights whenever another thread draws in between (parallel tests,
    /// the native replicas' helper threads). The distributions are burn's and PyTorch's
    /// defaults: the convolution and linear weights and the linear bias uniform in
    /// +-1/sqrt(fan_in); BatchNorm's scale 1 and shift 0 (not drawn).
    pub fn seeded(width: f64, seed: u64, device: &Device) -> Self {
        let (mut rng, fc_fan_in) = (StdRng::seed_from_u64(seed), channels(width)[3]);
        // A fresh net's parameters were never read, so burn never drew them.
        replace_params(Self::new(width, device), |name, shape| {
            let fan_in = if name.ends_with("conv.weight") {
                shape[1..].iter().product::<usize>()
            } else if name == "fc.weight" || name == "fc.bias" {
                fc_fan_in // burn's linear weight is [in, out]
            } else {
                return None; // BatchNorm: constants, nothing drawn
            };
            let bound = 1.0 / (fan_in as f32).sqrt();
            Some((0..shape.iter().product::<usize>()).map(|_| rng.random_range(-bound..bound)).collect())
        })
    }

    /// A copy that later training cannot change. `clone()` shares BatchNorm's running
    /// statistics (burn updates them in place), so a plain clone taken as "the last good
    /// epoch" would be poisoned by a later NaN; parameters are immutable tensors either way.
    pub fn checkpoint(&self) -> Self {
        Self {
            prep: self.prep.checkpoint(),
            layer1: self.layer1.checkpoint(),
            res1: self.res1.iter().map(ConvBn::checkpoint).collect(),
            layer2: self.layer2.checkpoint(),
            layer3: self.layer3.checkpoint(),
            res2: self.res2.iter().map(ConvBn::checkpoint).collect(),
            pool: self.pool.clone(),
            fc: self.fc.clone(),
        }
    }

    /// Logits `[n, 10]` for images `[n, 3, 32, 32]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.prep.forward(x);
        let x = self.layer1.forward(x);
        let x = x.clone() + self.res1.iter().fold(x, |h, block| block.forward(h));
        let x = self.layer2.forward(x);
        let x = self.layer3.forward(x);
        let x = x.clone() + self.res2.iter().fold(x, |h, block| block.forward(h));
        let x = self.pool.forward(x);
        let [n, c, _, _] = x.dims();
        self.fc.forward(x.reshape([n, c]))
    }
}

/// Calls `f(path, id, tensor)` for every float tensor, running statistics included.
struct PathVisitor<F: FnMut(String, ParamId, TensorAny)> {
    path: Vec<String>,
    f: F,
}

/// A float tensor of any rank used by the weight export.
#[derive(Clone, Debug)]
pub enum TensorAny {
    R1(Tensor<1>),
    R2(Tensor<2>),
    R4(Tensor<4>),
}

impl TensorAny {
    pub fn dims(&self) -> Vec<usize> {
        match self {
            TensorAny::R1(t) => t.dims().to_vec(),
            TensorAny::R2(t) => t.dims().to_vec(),
            TensorAny::R4(t) => t.dims().to_vec(),
        }
    }

    /// Sum of absolute values, on the device (infinite or NaN iff some element is).
    pub fn abs_sum(&self) -> Tensor<1> {
        match self {
            TensorAny::R1(t) => t.clone().abs().sum(),
            TensorAny::R2(t) => t.clone().abs().sum(),
            TensorAny::R4(t) => t.clone().abs().sum(),
        }
    }

    /// The tensor flattened (free for a contiguous tensor).
    pub fn flat(self) -> Tensor<1> {
        match self {
            TensorAny::R1(t) => t,
            TensorAny::R2(t) => t.flatten::<1>(0, 1),
            TensorAny::R4(t) => t.flatten::<1>(0, 3),
        }
    }

    /// Reads the tensor back without blocking (the only kind of read WebGPU allows).
    pub async fn into_data_async(self) -> Result<TensorData, String> {
        let r = match self {
            TensorAny::R1(t) => t.into_data_async().await,
            TensorAny::R2(t) => t.into_data_async().await,
            TensorAny::R4(t) => t.into_data_async().await,
        };
        r.map_err(|e| format!("{e:?}"))
    }
}

impl<F: FnMut(String, ParamId, TensorAny)> ModuleVisitor for PathVisitor<F> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.path.join(".");
        let t = param.val();
        let any = match D {
            1 => {
                let n = t.shape().num_elements();
                TensorAny::R1(t.reshape([n]))
            }
            2 => {
                let d = t.dims();
                TensorAny::R2(t.reshape([d[0], d[1]]))
            }
            _ => {
                let d = t.dims();
                TensorAny::R4(t.reshape([d[0], d[1], d[2], d[3]]))
            }
        };
        (self.f)(name, param.id, any);
    }
}

/// Every float tensor of a module with its path, in visiting order.
pub fn named_tensors<M: Module>(module: &M) -> Vec<(String, TensorAny)> {
    sync_running_stats(module);
    let mut tensors = Vec::new();
    module.visit(&mut PathVisitor { path: Vec::new(), f: |name, _, t| tensors.push((name, t)) });
    tensors
}

/// Reads named tensors back in one asynchronous read: concatenated on the device, then split.
/// One read instead of one per tensor (a ResNet-9 has 62, each a GPU round trip in the page).
pub async fn read_tensors(tensors: Vec<(String, TensorAny)>) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, String> {
    if tensors.is_empty() {
        return Ok(Vec::new());
    }
    let shapes: Vec<(String, Vec<usize>)> = tensors.iter().map(|(n, t)| (n.clone(), t.dims())).collect();
    // Detached: the read adds nothing to the autodiff graph.
    let all = Tensor::cat(tensors.into_iter().map(|(_, t)| t.flat().detach()).collect(), 0);
    let data = TensorAny::R1(all).into_data_async().await?;
    let values: Vec<f32> = data.convert::<f32>().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    let mut out = Vec::with_capacity(shapes.len());
    let mut offset = 0;
    for (name, shape) in shapes {
        let n: usize = shape.iter().product();
        let part = values.get(offset..offset + n).ok_or("the device returned fewer values than asked")?;
        out.push((name, shape, part.to_vec()));
        offset += n;
    }
    Ok(out)
}

/// Makes BatchNorm's running statistics current. burn keeps a training forward's update in a
/// per-thread slot and merges it only on the next update or on `valid()`/`train()`, while a
/// module visitor reads the merged value: without this, every export, snapshot and resume
/// state held running statistics one training step old (the PyTorch fixture caught it).
/// `valid()` merges in place (its returned copy is dropped; it shares the tensors).
pub fn sync_running_stats<M: Module>(module: &M) {
    let _ = module.valid();
}

/// Every parameter's id by path (a resumed optimiser finds its momentum by id).
pub fn param_ids<M: Module>(module: &M) -> BTreeMap<String, u64> {
    let mut ids = BTreeMap::new();
    module.visit(&mut PathVisitor { path: Vec::new(), f: |name, id: ParamId, _| {
        ids.insert(name, id.val());
    } });
    ids
}

/// Whether every parameter and running statistic is finite: one scalar read.
pub async fn is_finite<M: Module>(module: &M) -> Result<bool, String> {
    let sums: Vec<Tensor<1>> = named_tensors(module).iter().map(|(_, t)| t.abs_sum()).collect();
    if sums.is_empty() {
        return Ok(true);
    }
    let total = Tensor::cat(sums, 0).sum().into_data_async().await.map_err(|e| format!("{e:?}"))?;
    let finite = total.iter::<f32>().all(f32::is_finite);
    Ok(finite)
}

/// Whether a path names a BatchNorm running statistic (a buffer, not a trainable parameter).
pub fn is_buffer(path: &str) -> bool {
    path.ends_with("running_mean") || path.ends_with("running_var")
}

/// Trainable parameters (burn's `num_params` also counts BatchNorm running statistics).
pub fn trainable_params<M: Module>(module: &M) -> usize {
    named_tensors(module)
        .iter()
        .filter(|(path, _)| !is_buffer(path))
        .map(|(_, t)| t.dims().iter().product::<usize>())
        .sum()
}
