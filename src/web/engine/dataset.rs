//! Loading CIFAR-10: from a URL, from the visitor's files, from the browser cache; what the
//! page is told once it is loaded (counts, class names, the preview).

use std::rc::Rc;

use wasm_bindgen_futures::spawn_local;

use super::loader;
use super::state::*;
use crate::augment::Normalization;
use crate::data::{Cifar10, DataError};
use crate::web::protocol::{Progress, Update, PREVIEW};

pub fn data_loaded(data: Cifar10, source: &str) {
    let status = format!("{} train · {} test · from {source}", data.train.len(), data.test.len());
    let norm = Normalization::from_split(&data.train);
    let shown = PREVIEW.min(data.train.len());
    let sample: Vec<u8> = (0..shown).flat_map(|i| data.train.image(i).iter().copied()).collect();
    let update = Update::DataLoaded {
        status,
        class_names: data.class_names.clone(),
        norm,
        sample_labels: data.train.labels[..shown].to_vec(),
    };
    with_engine(|e| {
        e.data = Some(Rc::new(data));
        e.norm = Some(norm);
    });
    emit_with(update, vec![bytes(&sample)]);
}

pub fn data_failed(e: DataError) {
    emit(Update::DataProgress(None));
    emit(Update::DataError(Some(e.to_string())));
}

pub fn progress(p: &Progress) {
    emit(Update::DataProgress(Some(p.clone())));
}

pub fn load_url(url: String, files: Vec<String>) {
    emit(Update::DataError(None));
    spawn_local(async move {
        match loader::load_from_url(&url, &files, progress).await {
            Ok(data) => data_loaded(data, &format!("URL {url}")),
            Err(e) => data_failed(e),
        }
    });
}

pub fn load_files(files: Vec<web_sys::File>) {
    if files.is_empty() {
        return;
    }
    emit(Update::DataError(None));
    let names: Vec<String> = files.iter().map(|f| f.name()).collect();
    spawn_local(async move {
        match loader::load_from_files(files, progress).await {
            Ok(data) => data_loaded(data, &format!("file {}", names.join(", "))),
            Err(e) => data_failed(e),
        }
    });
}

pub async fn load_cache() {
    if let Some(data) = loader::load_from_cache().await {
        data_loaded(data, "browser cache (no network used)");
    }
}
