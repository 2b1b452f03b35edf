//! The GPU self-test: before the first GPU action, every operation training relies on runs on
//! the device on small fixed inputs and is compared with a plain-Rust reference computed here
//! on the CPU.
//!
//! Why: on the web a shader that fails validation is skipped with only a log line (CubeCL
//! issue 1641) and some drivers compute wrong results (TF.js issue 2837), so a GPU can train
//! garbage without any error. A convolution algorithm that fails is not used; if the basics
//! (BatchNorm, max-pool, cross-entropy, the optimiser) fail, nothing should run on that GPU.
//!
//! The inputs are distinct values (a max-pool has no ties to break differently) in a
//! non-square layout with odd channel counts, so a transposed or misindexed kernel shows.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::prelude::*;

use crate::model::{conv3x3_with, ConvAlgorithm};
use crate::optim::NesterovSgd;

/// Largest accepted error, relative to the largest magnitude of the reference. float32 work
/// of this size agrees to about 1e-6; a wrong index or a skipped shader is off by ~1.
pub const TOLERANCE: f64 = 1e-4;

/// Shapes of the test: batch, input channels, output channels, height, width.
const N: usize = 3;
const C_IN: usize = 5;
const C_OUT: usize = 4;
const H: usize = 6;
const W: usize = 8;
const CLASSES: usize = 10;
/// BatchNorm's epsilon (burn's and PyTorch's default, as in the model).
const EPS: f64 = 1e-5;

/// One compared result.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// For example "conv im2col weight gradient".
    pub name: String,
    /// The convolution algorithm it belongs to; `None` for the basics every run needs.
    pub conv: Option<ConvAlgorithm>,
    /// max |gpu - cpu| / max |cpu| (NaN when the GPU returned a NaN).
    pub error: f64,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.error <= TOLERANCE // false for NaN
    }
}

/// Every check, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// BatchNorm, max-pool, cross-entropy and the optimiser agree with the reference.
    pub fn basics_ok(&self) -> bool {
        self.checks.iter().filter(|c| c.conv.is_none()).all(Check::passed)
    }

    /// Whether this convolution algorithm was checked (it runs on this device) and every one
    /// of its checks passed.
    pub fn conv_ok(&self, algorithm: ConvAlgorithm) -> bool {
        let mut checks = self.checks.iter().filter(|c| c.conv == Some(algorithm)).peekable();
        checks.peek().is_some() && checks.all(Check::passed)
    }

    /// Whether this convolution algorithm was checked and at least one check failed.
    pub fn conv_failed(&self, algorithm: ConvAlgorithm) -> bool {
        self.checks.iter().any(|c| c.conv == Some(algorithm) && !c.passed())
    }

    /// The convolution algorithms that may train on this device (none if the basics failed).
    pub fn usable_convs(&self) -> Vec<ConvAlgorithm> {
        if !self.basics_ok() {
            return Vec::new();
        }
        ConvAlgorithm::ALL.into_iter().filter(|&a| self.conv_ok(a)).collect()
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed())
    }

    /// One line for the page and the CLI.
    pub fn summary(&self, adapter: &str) -> String {
        self.summary_on("GPU self-test", adapter)
    }

    /// [`Report::summary`] under another title (the page's CPU engine: "Self-test").
    pub fn summary_on(&self, title: &str, adapter: &str) -> String {
        let worst = self.checks.iter().map(|c| c.error).fold(0.0, f64::max);
        if self.passed() {
            return format!(
                "{title} passed on {adapter}: {} checks, worst relative error {worst:.1e} (tolerance {TOLERANCE:.0e}).",
                self.checks.len()
            );
        }
        let failed: Vec<String> = self.failures().map(|c| format!("{} (error {:.1e})", c.name, c.error)).collect();
        let outcome = if !self.basics_ok() {
            "nothing will run on this GPU: its results would be wrong. Try another browser, \
             update the graphics driver, or use another GPU."
                .to_string()
        } else {
            let bad: Vec<&str> =
                ConvAlgorithm::ALL.into_iter().filter(|&a| self.conv_failed(a)).map(ConvAlgorithm::name).collect();
            let good: Vec<&str> = self.usable_convs().into_iter().map(ConvAlgorithm::name).collect();
            if good.is_empty() {
                "no convolution algorithm works, so nothing will run on this GPU. Try another \
                 browser or update the graphics driver."
                    .to_string()
            } else {
                format!("{} convolutions will not be used; training uses {}.", bad.join(", "), good.join(", "))
            }
        };
        format!(
            "{title} FAILED on {adapter}: {} of {} checks off by more than {TOLERANCE:.0e}: {}; {outcome}",
            failed.len(),
            self.checks.len(),
            failed.join(", ")
        )
    }
}

/// `count` distinct values in [-1, 1): a multiplicative permutation of 0..p for a prime p.
fn values(count: usize, salt: usize) -> Vec<f32> {
    const P: usize = 7919; // prime, larger than any tensor here
    (0..count).map(|i| ((i * 1543 + salt * 97 + 11) % P) as f32 / P as f32 * 2.0 - 1.0).collect()
}

fn relative_error(gpu: &[f32], cpu: &[f64]) -> f64 {
    if gpu.len() != cpu.len() {
        return f64::NAN;
    }
    let scale = cpu.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let mut worst = 0.0f64;
    for (g, c) in gpu.iter().zip(cpu) {
        let e = (*g as f64 - c).abs();
        if e.is_nan() {
            return f64::NAN;
        }
        worst = worst.max(e);
    }
    worst / scale
}

async fn read<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    let data = t.into_data_async().await.map_err(|e| format!("GPU read failed: {e:?}"))?;
    data.try_to_vec::<f32>().map_err(|e| format!("GPU read failed: {e:?}"))
}

/// The CPU reference of a 3x3 pad-1 convolution and, for the upstream gradient `g`, its input
/// and weight gradients.
fn conv_reference(x: &[f32], w: &[f32], g: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; N * C_OUT * H * W];
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for n in 0..N {
        for o in 0..C_OUT {
            for i in 0..H {
                for j in 0..W {
                    let out = ((n * C_OUT + o) * H + i) * W + j;
                    for c in 0..C_IN {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (yi, xj) = ((i + ky) as isize - 1, (j + kx) as isize - 1);
                                if yi < 0 || xj < 0 || yi >= H as isize || xj >= W as isize {
                                    continue;
                                }
                                let xi = ((n * C_IN + c) * H + yi as usize) * W + xj as usize;
                                let wi = ((o * C_IN + c) * 3 + ky) * 3 + kx;
                                y[out] += w[wi] as f64 * x[xi] as f64;
                                dx[xi] += g[out] as f64 * w[wi] as f64;
                                dw[wi] += g[out] as f64 * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (y, dx, dw)
}

/// Training-mode BatchNorm over `[N, C, H, W]`: output and the gradients of input, scale and
/// shift for the upstream gradient `g`.
fn batch_norm_reference(x: &[f32], gamma: &[f32], beta: &[f32], g: &[f32], c_count: usize) -> [Vec<f64>; 4] {
    let m = (N * H * W) as f64;
    let idx = |n: usize, c: usize, p: usize| (n * c_count + c) * H * W + p;
    let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let (mut dgamma, mut dbeta) = (vec![0.0; c_count], vec![0.0; c_count]);
    for c in 0..c_count {
        let all = || (0..N).flat_map(move |n| (0..H * W).map(move |p| idx(n, c, p)));
        let mean = all().map(|i| x[i] as f64).sum::<f64>() / m;
        let var = all().map(|i| (x[i] as f64 - mean).powi(2)).sum::<f64>() / m;
        let inv = 1.0 / (var + EPS).sqrt();
        let (mut sum_g, mut sum_gx) = (0.0, 0.0);
        for i in all() {
            let xhat = (x[i] as f64 - mean) * inv;
            y[i] = gamma[c] as f64 * xhat + beta[c] as f64;
            sum_g += g[i] as f64;
            sum_gx += g[i] as f64 * xhat;
        }
        dbeta[c] = sum_g;
        dgamma[c] = sum_gx;
        for i in all() {
            let xhat = (x[i] as f64 - mean) * inv;
            dx[i] = gamma[c] as f64 * inv * (g[i] as f64 - sum_g / m - xhat * sum_gx / m);
        }
    }
    [y, dx, dgamma, dbeta]
}

/// 2x2 max-pool, stride 2: output and input gradient (values are distinct: no ties).
fn max_pool_reference(x: &[f32], g: &[f32], c_count: usize) -> (Vec<f64>, Vec<f64>) {
    let (ho, wo) = (H / 2, W / 2);
    let mut y = vec![0.0; N * c_count * ho * wo];
    let mut dx = vec![0.0; x.len()];
    for nc in 0..N * c_count {
        for i in 0..ho {
            for j in 0..wo {
                let candidates = [(2 * i, 2 * j), (2 * i, 2 * j + 1), (2 * i + 1, 2 * j), (2 * i + 1, 2 * j + 1)];
                let best = candidates
                    .iter()
                    .map(|&(a, b)| (nc * H + a) * W + b)
                    .fold(None, |best: Option<usize>, k| match best {
                        Some(b) if x[b] >= x[k] => Some(b),
                        _ => Some(k),
                    })
                    .unwrap_or(0);
                let out = (nc * ho + i) * wo + j;
                y[out] = x[best] as f64;
                dx[best] += g[out] as f64;
            }
        }
    }
    (y, dx)
}

/// Mean cross-entropy of `[N, CLASSES]` logits and its gradient.
fn cross_entropy_reference(logits: &[f32], labels: &[i64]) -> (f64, Vec<f64>) {
    let mut loss = 0.0;
    let mut grad = vec![0.0; logits.len()];
    for n in 0..N {
        let row = &logits[n * CLASSES..(n + 1) * CLASSES];
        let max = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        let label = labels[n] as usize;
        loss += max + sum.ln() - row[label] as f64;
        for k in 0..CLASSES {
            let p = (row[k] as f64 - max).exp() / sum;
            grad[n * CLASSES + k] = (p - if k == label { 1.0 } else { 0.0 }) / N as f64;
        }
    }
    (loss / N as f64, grad)
}

/// Two steps of SGD with Nesterov momentum and L2 weight decay (PyTorch's formula).
fn optimiser_reference(p: &[f32], grads: [&[f32]; 2], lr: f64, mu: f64, wd: f64) -> Vec<f64> {
    let mut p: Vec<f64> = p.iter().map(|&v| v as f64).collect();
    let mut v = vec![0.0; p.len()];
    for (step, grad) in grads.iter().enumerate() {
        for i in 0..p.len() {
            let g = grad[i] as f64 + wd * p[i];
            v[i] = if step == 0 { g } else { mu * v[i] + g };
            p[i] -= lr * (g + mu * v[i]);
        }
    }
    p
}

/// A test-only hook: the named check's GPU result is corrupted before the comparison, so tests
/// can prove that a wrong kernel is reported and its algorithm excluded.
#[derive(Clone, Debug, Default)]
pub struct Fault(pub Option<String>);

impl Fault {
    fn apply(&self, name: &str, mut gpu: Vec<f32>) -> Vec<f32> {
        if self.0.as_deref() == Some(name) {
            if let Some(v) = gpu.first_mut() {
                *v += 1.0;
            }
        }
        gpu
    }
}

struct Checker {
    fault: Fault,
    checks: Vec<Check>,
}

impl Checker {
    fn compare(&mut self, name: String, conv: Option<ConvAlgorithm>, gpu: Vec<f32>, cpu: &[f64]) {
        let gpu = self.fault.apply(&name, gpu);
        self.checks.push(Check { error: relative_error(&gpu, cpu), name, conv });
    }
}

fn tensor<const D: usize>(v: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

/// Runs every check on `device` (autodiff is added here). `Err` only when the device fails
/// outright (a read that does not come back); wrong numbers are failed checks in the report.
pub async fn run(device: &Device, fault: &Fault) -> Result<Report, String> {
    let ad = device.clone().autodiff();
    let mut k = Checker { fault: fault.clone(), checks: Vec::new() };

    // Convolutions: forward, and both gradients of sum(y * g).
    let x = values(N * C_IN * H * W, 1);
    let w = values(C_OUT * C_IN * 9, 2);
    let g = values(N * C_OUT * H * W, 3);
    let (y_ref, dx_ref, dw_ref) = conv_reference(&x, &w, &g);
    // Only what this device can run: an algorithm without checks is never usable.
    for algorithm in ConvAlgorithm::available_on(device) {
        let xt = tensor(&x, [N, C_IN, H, W], &ad).require_grad();
        let wt = tensor(&w, [C_OUT, C_IN, 3, 3], &ad).require_grad();
        let y = conv3x3_with(algorithm, xt.clone(), wt.clone());
        let grads = (y.clone() * tensor(&g, [N, C_OUT, H, W], &ad)).sum().backward();
        let name = algorithm.name();
        k.compare(format!("conv {name} forward"), Some(algorithm), read(y).await?, &y_ref);
        let dx = xt.grad(&grads).ok_or("no input gradient")?;
        k.compare(format!("conv {name} input gradient"), Some(algorithm), read(dx).await?, &dx_ref);
        let dw = wt.grad(&grads).ok_or("no weight gradient")?;
        k.compare(format!("conv {name} weight gradient"), Some(algorithm), read(dw).await?, &dw_ref);
    }

    // BatchNorm in training mode (batch statistics), as the model calls it.
    let gamma = values(C_OUT, 4).iter().map(|v| 1.0 + v / 2.0).collect::<Vec<_>>();
    let beta = values(C_OUT, 5);
    let xb = values(N * C_OUT * H * W, 6);
    let [y_ref, dx_ref, dgamma_ref, dbeta_ref] = batch_norm_reference(&xb, &gamma, &beta, &g, C_OUT);
    let xt = tensor(&xb, [N, C_OUT, H, W], &ad).require_grad();
    let gt = tensor(&gamma, [C_OUT], &ad).require_grad();
    let bt = tensor(&beta, [C_OUT], &ad).require_grad();
    let y = burn::tensor::module::batch_norm_train(xt.clone(), gt.clone(), bt.clone(), EPS).output;
    let grads = (y.clone() * tensor(&g, [N, C_OUT, H, W], &ad)).sum().backward();
    k.compare("batch-norm forward".into(), None, read(y).await?, &y_ref);
    k.compare("batch-norm input gradient".into(), None, read(xt.grad(&grads).ok_or("no gradient")?).await?, &dx_ref);
    k.compare("batch-norm scale gradient".into(), None, read(gt.grad(&grads).ok_or("no gradient")?).await?, &dgamma_ref);
    k.compare("batch-norm shift gradient".into(), None, read(bt.grad(&grads).ok_or("no gradient")?).await?, &dbeta_ref);

    // Max-pool 2x2 (the model's layer).
    let gp = values(N * C_OUT * (H / 2) * (W / 2), 7);
    let (y_ref, dx_ref) = max_pool_reference(&xb, &gp, C_OUT);
    let xt = tensor(&xb, [N, C_OUT, H, W], &ad).require_grad();
    let y = MaxPool2dConfig::new([2, 2]).init().forward(xt.clone());
    let grads = (y.clone() * tensor(&gp, [N, C_OUT, H / 2, W / 2], &ad)).sum().backward();
    k.compare("max-pool forward".into(), None, read(y).await?, &y_ref);
    k.compare("max-pool input gradient".into(), None, read(xt.grad(&grads).ok_or("no gradient")?).await?, &dx_ref);

    // Cross-entropy (the training loss) and its gradient.
    let logits: Vec<f32> = values(N * CLASSES, 8).iter().map(|v| v * 4.0).collect();
    let labels: Vec<i64> = vec![3, 0, 9];
    let (loss_ref, grad_ref) = cross_entropy_reference(&logits, &labels);
    let lt = tensor(&logits, [N, CLASSES], &ad).require_grad();
    let yt = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [N]), &ad);
    let loss = CrossEntropyLossConfig::new().init(&ad).forward(lt.clone(), yt);
    let grads = loss.backward();
    k.compare("cross-entropy loss".into(), None, read(loss).await?, &[loss_ref]);
    k.compare("cross-entropy gradient".into(), None, read(lt.grad(&grads).ok_or("no gradient")?).await?, &grad_ref);

    // Two optimiser steps (the second uses the momentum of the first).
    let (lr, mu, wd) = (0.1, 0.9, 5e-4);
    let p = values(37, 9);
    let (g1, g2) = (values(37, 10), values(37, 11));
    let reference = optimiser_reference(&p, [&g1, &g2], lr, mu, wd);
    let (sgd, _) = NesterovSgd::init(mu, wd);
    let (p1, velocity) = sgd.update(lr, tensor(&p, [37], device), tensor(&g1, [37], device), None);
    let (p2, _) = sgd.update(lr, p1, tensor(&g2, [37], device), Some(velocity));
    k.compare("optimiser two steps".into(), None, read(p2).await?, &reference);

    Ok(Report { checks: k.checks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_distinct() {
        let v = values(N * C_OUT * H * W, 6);
        let mut s: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), v.len());
    }

    #[test]
    fn a_nan_fails() {
        assert!(!Check { name: "x".into(), conv: None, error: relative_error(&[f32::NAN], &[1.0]) }.passed());
    }
}
