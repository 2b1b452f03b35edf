//! What every forward or backward pass shares, whoever runs it (the training loop, the LR
//! finder, the benchmark, a CPU replica): batches onto the device, the logits of an
//! evaluation's views, and the error a pass ends with. `train.rs` re-exports them.

use burn::prelude::*;

use crate::model::ResNet9;

/// Why training ended early.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainError {
    /// The host asked to stop.
    Stopped,
    /// The loss became NaN or infinite; the model was rolled back to the last good epoch.
    Diverged { epoch: usize, step: usize, lr: f64 },
    /// The device failed (lost, out of memory, ...).
    Device(String),
    /// Bad settings or data.
    Invalid(String),
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainError::Stopped => write!(f, "stopped"),
            TrainError::Diverged { epoch, step, lr } => write!(
                f,
                "the loss became NaN or infinite at epoch {} step {step} (learning rate {lr:.4}); \
                 try a lower max LR. The weights of the last good epoch are kept for export.",
                epoch + 1
            ),
            TrainError::Device(e) => write!(
                f,
                "the GPU device failed: {e}. Everything learned up to the last completed epoch \
                 is kept: export it, or continue the run from there on a new device \
                 (the page's \"Continue on a new device\"; natively --save-state/--resume)."
            ),
            TrainError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TrainError {}

/// A device error (a failed read-back) as a [`TrainError`].
pub fn device_error(e: impl std::fmt::Debug) -> TrainError {
    TrainError::Device(format!("{e:?}"))
}

/// Uploads a batch to the device (consumed: its 6 MB of floats move into the upload, no copy).
pub fn batch_tensors(batch: crate::augment::Batch, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let n = batch.len();
    let images = Tensor::<4>::from_data(TensorData::new(batch.images, [n, 3, 32, 32]), device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(batch.labels, [n]), device);
    (images, labels)
}

/// The weighted sum of the logits of `n` images seen through views (one batch of images a
/// view, `weights` theirs; a single view is not multiplied).
pub fn view_logits_of(model: &ResNet9, batches: Vec<Vec<f32>>, weights: &[f32], n: usize, device: &Device) -> Tensor<2> {
    let single = batches.len() == 1;
    let mut sum: Option<Tensor<2>> = None;
    for (images, &weight) in batches.into_iter().zip(weights) {
        let images = Tensor::<4>::from_data(TensorData::new(images, [n, 3, 32, 32]), device);
        let out = model.forward(images);
        let out = if single { out } else { out.mul_scalar(weight) };
        sum = Some(match sum.take() {
            Some(s) => s + out,
            None => out,
        });
    }
    sum.unwrap_or_else(|| Tensor::zeros([n, 10], device))
}
