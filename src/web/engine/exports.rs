//! Weights and metrics out (downloads), weights in (a picked file).

use wasm_bindgen_futures::{spawn_local, JsFuture};

use super::state::*;
use crate::web::protocol::{Place, Update};
use crate::weights;

/// Which weights to export: the GPU model if it reads back, else the last epoch's CPU copy.
pub async fn export_snapshot() -> Result<weights::Snapshot, String> {
    let model = with_engine(|e| e.model.clone());
    if let Some(model) = model {
        match weights::snapshot(&model).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                if let Some(s) = with_engine(|e| e.saved.as_ref().map(|s| s.model.clone())) {
                    log::warn!("reading the GPU model failed ({e}); exporting the last epoch's copy");
                    return Ok(s);
                }
                return Err(e.to_string());
            }
        }
    }
    with_engine(|e| e.saved.as_ref().map(|s| s.model.clone())).ok_or_else(|| "no trained weights yet".to_string())
}

pub fn download(name: &str, mime: &str, data: &[u8]) {
    emit_with(Update::Download { name: name.into(), mime: mime.into() }, vec![bytes(data)]);
}

/// The weights in burn's format (`safetensors = false`) or as `.safetensors`, as a download.
pub async fn export_weights(safetensors: bool) {
    let result = async {
        let snap = export_snapshot().await?;
        if safetensors {
            let data = snap.to_safetensors().map_err(|e| e.to_string())?;
            download("resnet9-cifar10.safetensors", "application/octet-stream", &data);
        } else {
            let data = snap.to_burnpack().map_err(|e| e.to_string())?;
            download("resnet9-cifar10.bpk", "application/octet-stream", &data);
        }
        Ok::<(), String>(())
    }
    .await;
    if let Err(e) = result {
        say(Place::Weights, true, format!("Export failed: {e}"));
    }
}

/// The metrics as JSON or CSV, as a download.
pub fn export_metrics(csv: bool) {
    let log = with_engine(|e| e.log.clone());
    if csv {
        download("metrics.csv", "text/csv", log.to_csv().as_bytes());
    } else {
        match serde_json::to_string_pretty(&log) {
            Ok(json) => download("metrics.json", "application/json", json.as_bytes()),
            Err(e) => say(Place::Weights, true, format!("Export failed: {e}")),
        }
    }
}

/// Imports weights from a picked file (either format).
pub fn import_weights(file: web_sys::File) {
    let device = match compute_device() {
        Ok((d, _)) => d,
        Err(why) => return say(Place::Weights, true, format!("Weights cannot be loaded: {why}")),
    };
    if busy() {
        return say(Place::Weights, true, "Stop training before importing weights.");
    }
    spawn_local(async move {
        let data = match JsFuture::from(file.array_buffer()).await {
            Ok(buf) => js_sys::Uint8Array::new(&buf).to_vec(),
            Err(e) => return say(Place::Weights, true, format!("Could not read {}: {e:?}", file.name())),
        };
        match weights::import(&data, &device) {
            Ok(model) => {
                with_engine(|e| e.model = Some(model));
                emit(Update::Exportable(true));
                say(Place::Weights, false, format!("Loaded weights from {}.", file.name()));
            }
            Err(e) => say(Place::Weights, true, format!("{}: {e}", file.name())),
        }
    });
}
