//! Classifying one image the page decoded, with the current model: the top 3 classes.

use super::host::*;
use super::state::*;
use crate::augment::Normalization;
use crate::data::IMAGE_BYTES;
use crate::web::protocol::Update;

/// Classifies a decoded image with the current model: top-3 classes.
pub async fn predict(planar: Vec<u8>) {
    let result = async {
        if planar.len() != IMAGE_BYTES {
            return Err(format!("expected a 32x32 RGB image ({IMAGE_BYTES} bytes), got {} bytes", planar.len()));
        }
        let (model, norm, names) =
            with_engine(|e| (e.model.clone(), e.norm, e.data.as_ref().map(|d| d.class_names.clone())));
        let device = compute_device().ok().map(|(d, _)| d);
        let model = model.ok_or("train or import a model first")?;
        let device = device.ok_or("no device to compute on (see the status above)")?;
        let names = names.unwrap_or_else(|| crate::data::DEFAULT_CLASS_NAMES.iter().map(|s| s.to_string()).collect());
        // Without loaded data, fall back to CIFAR-10's well-known channel statistics.
        let norm = norm.unwrap_or(Normalization { mean: [125.3, 123.0, 113.9], std: [63.0, 62.1, 66.7] });
        let batch = crate::augment::make_batch(
            &crate::data::Split { images: planar, labels: vec![0] },
            &[0],
            crate::augment::Augment::NONE,
            &norm,
            &mut crate::augment::rng(0, 0),
        );
        let (x, _) = crate::train::batch_tensors(batch, &device.without_autodiff());
        let probs = crate::train::predict(&model, x).await.map_err(|e| e.to_string())?;
        if let Some(failure) = gpu_failure() {
            return Err(format!("{failure} (during the prediction)"));
        }
        let p = probs.first().ok_or("no output")?;
        let mut ranked: Vec<(usize, f32)> = p.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok::<String, String>(
            ranked
                .iter()
                .take(3)
                .map(|(c, p)| format!("{} {:.1}%", names.get(*c).map(String::as_str).unwrap_or("?"), p * 100.0))
                .collect::<Vec<_>>()
                .join(" · "),
        )
    }
    .await;
    emit(Update::Predicted(result));
}
