//! Getting CIFAR-10 into the page: streamed fetch by URL, a picked or dropped file, and the
//! browser cache (Cache Storage) so a reload needs no network.

use std::io::Cursor;

use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::data::{self, Cifar10, DataError, ShardSet};

fn js_err(v: JsValue) -> DataError {
    DataError::Other(v.as_string().unwrap_or_else(|| format!("{v:?}")))
}

use crate::web::js::{global, now_ms};
use crate::web::protocol::Progress;

const CACHE_NAME: &str = "cifar10-webgpu-shards-v1";

/// Cache Storage, in a window or a worker alike.
fn caches() -> Option<web_sys::CacheStorage> {
    global("caches")?.dyn_into().ok()
}

async fn cache() -> Option<web_sys::Cache> {
    let caches = caches()?;
    JsFuture::from(caches.open(CACHE_NAME)).await.ok()?.dyn_into().ok()
}

/// Stores a shard under a stable key (its file name) so a reload finds it.
async fn cache_put(name: &str, bytes: &[u8]) {
    let Some(cache) = cache().await else { return };
    let array = Uint8Array::from(bytes);
    let Ok(resp) = web_sys::Response::new_with_opt_buffer_source(Some(&array)) else { return };
    let _ = JsFuture::from(cache.put_with_str(&cache_key(name), &resp)).await;
}

/// An absolute key: a worker started from a `blob:` URL cannot resolve a relative one, and the
/// page and the worker must find the same entries.
fn cache_key(name: &str) -> String {
    let origin = global("origin").and_then(|o| o.as_string()).unwrap_or_default();
    format!("{origin}/cifar10-webgpu-cache/{name}")
}

async fn cache_get(name: &str) -> Option<Vec<u8>> {
    let cache = cache().await?;
    let hit = JsFuture::from(cache.match_with_str(&cache_key(name))).await.ok()?;
    let resp: web_sys::Response = hit.dyn_into().ok()?;
    let buf = JsFuture::from(resp.array_buffer().ok()?).await.ok()?;
    Some(Uint8Array::new(&buf).to_vec())
}

/// Removes every cached shard.
pub async fn clear_cache() -> bool {
    let Some(caches) = caches() else { return false };
    JsFuture::from(caches.delete(CACHE_NAME)).await.ok().and_then(|v| v.as_bool()).unwrap_or(false)
}

/// Loads the data set from the cache, if every file of a previous load is there.
pub async fn load_from_cache() -> Option<Cifar10> {
    let manifest = cache_get("manifest.txt").await?;
    let names: Vec<String> =
        String::from_utf8(manifest).ok()?.lines().map(String::from).filter(|l| !l.is_empty()).collect();
    let mut set = ShardSet::new();
    for name in &names {
        let bytes = cache_get(name).await?;
        set.add(name, &bytes).ok()?;
    }
    set.finish().ok()
}

async fn remember(files: &[(String, Vec<u8>)]) {
    let _ = clear_cache().await;
    for (name, bytes) in files {
        cache_put(name, bytes).await;
    }
    let manifest: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    cache_put("manifest.txt", manifest.join("\n").as_bytes()).await;
}

/// Fetches one file, streamed, reporting progress after each chunk.
async fn fetch_streamed(
    url: &str,
    name: &str,
    base: &mut Progress,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<Vec<u8>, DataError> {
    let fetch: js_sys::Function = global("fetch")
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| DataError::Other("this browser has no fetch".into()))?;
    let promise: js_sys::Promise =
        fetch.call1(&js_sys::global(), &url.into()).map_err(js_err)?.dyn_into().map_err(js_err)?;
    let resp: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(|e| DataError::Other(format!("{url}: network error ({})", js_err(e))))?
        .dyn_into()
        .map_err(js_err)?;
    if !resp.ok() {
        return Err(DataError::Other(format!("{url}: HTTP {} {}", resp.status(), resp.status_text())));
    }
    let total = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|s| s.parse::<u64>().ok());
    let body = resp.body().ok_or_else(|| DataError::Other(format!("{url}: empty body")))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().dyn_into().map_err(|o| js_err(o.into()))?;
    // The server's Content-Length is only a hint: never reserve more than a shard.
    let mut bytes = Vec::with_capacity(total.unwrap_or(0).min(data::SHARD_BYTES as u64) as usize);
    let start = now_ms();
    base.name = name.to_string();
    base.total = total;
    base.loaded = 0;
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(js_err)?;
        let done = js_sys::Reflect::get(&chunk, &"done".into()).map_err(js_err)?.is_truthy();
        if done {
            break;
        }
        let value = js_sys::Reflect::get(&chunk, &"value".into()).map_err(js_err)?;
        let array: Uint8Array = value.dyn_into().map_err(js_err)?;
        let n = array.length() as usize;
        if bytes.len() + n > data::SHARD_BYTES + 4096 {
            return Err(DataError::TooLarge { name: name.to_string() });
        }
        let old = bytes.len();
        bytes.resize(old + n, 0);
        array.copy_to(&mut bytes[old..]);
        base.loaded += n as u64;
        base.all_loaded += n as u64;
        base.mb_per_s = base.loaded as f64 / 1e6 / ((now_ms() - start).max(1.0) / 1000.0);
        on_progress(base);
    }
    Ok(bytes)
}

/// Loads shards from `base_url` (ending in `/`), one file after the other.
pub async fn load_from_url(
    base_url: &str,
    files: &[String],
    mut on_progress: impl FnMut(&Progress),
) -> Result<Cifar10, DataError> {
    let base_url = if base_url.ends_with('/') { base_url.to_string() } else { format!("{base_url}/") };
    let mut progress = Progress { phase: "downloading".into(), ..Default::default() };
    let shard_count = files.iter().filter(|f| f.ends_with(".bin")).count() as u64;
    // Official shards have a known size: the overall bar is exact for them.
    if files.iter().all(|f| !f.ends_with(".bin") || data::official_files().contains(f)) {
        progress.all_total = Some(shard_count * data::SHARD_BYTES as u64);
    }
    let mut set = ShardSet::new();
    let mut kept = Vec::new();
    for name in files {
        let url = format!("{base_url}{name}");
        let bytes = match fetch_streamed(&url, name, &mut progress, &mut on_progress).await {
            Ok(b) => b,
            // The class-name file is optional.
            Err(_) if name == data::META_FILE => continue,
            Err(e) => return Err(e),
        };
        set.add(name, &bytes)?;
        kept.push((name.clone(), bytes));
    }
    let data = set.finish()?;
    remember(&kept).await;
    Ok(data)
}

/// Reads a picked or dropped file in slices (so progress shows), returning its bytes.
async fn read_file(
    file: &web_sys::File,
    progress: &mut Progress,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<Vec<u8>, DataError> {
    const SLICE: f64 = 8.0 * 1024.0 * 1024.0;
    let size = file.size();
    let mut bytes = Vec::with_capacity(size as usize);
    let start = now_ms();
    progress.name = file.name();
    progress.total = Some(size as u64);
    progress.loaded = 0;
    let mut offset = 0.0;
    while offset < size {
        let end = (offset + SLICE).min(size);
        let blob = file.slice_with_f64_and_f64(offset, end).map_err(js_err)?;
        let buf = JsFuture::from(blob.array_buffer()).await.map_err(js_err)?;
        bytes.extend_from_slice(&Uint8Array::new(&buf).to_vec());
        progress.loaded = end as u64;
        progress.all_loaded += (end - offset) as u64;
        progress.mb_per_s = progress.loaded as f64 / 1e6 / ((now_ms() - start).max(1.0) / 1000.0);
        on_progress(progress);
        offset = end;
    }
    Ok(bytes)
}

/// Loads from files the user picked or dropped: one `cifar-10-binary.tar.gz`, or `.bin` shards
/// (with an optional `batches.meta.txt`).
pub async fn load_from_files(
    files: Vec<web_sys::File>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Cifar10, DataError> {
    let mut progress = Progress {
        phase: "reading".into(),
        all_total: Some(files.iter().map(|f| f.size() as u64).sum()),
        ..Default::default()
    };
    let archive = files
        .iter()
        .find(|f| !f.name().ends_with(".bin") && f.name() != data::META_FILE);
    if let Some(file) = archive {
        if files.len() > 1 {
            return Err(DataError::Other(
                "pick either one cifar-10-binary.tar.gz or the .bin shards, not both".into(),
            ));
        }
        let bytes = read_file(file, &mut progress, &mut on_progress).await?;
        progress.phase = "decompressing".into();
        on_progress(&progress);
        // Let the page paint the phase before the (synchronous) inflate.
        gloo::timers::future::TimeoutFuture::new(0).await;
        let mut kept = Vec::new();
        let data = data::read_tarball(Cursor::new(bytes), |_| {})?;
        // Cache what was parsed as raw shards: the record layout is the file layout.
        kept.push(("train_all.bin".to_string(), to_records(&data.train)));
        kept.push(("test_all.bin".to_string(), to_records(&data.test)));
        kept.push((data::META_FILE.to_string(), data.class_names.join("\n").into_bytes()));
        remember(&kept).await;
        return Ok(data);
    }
    let mut set = ShardSet::new();
    let mut kept = Vec::new();
    for file in &files {
        let bytes = read_file(file, &mut progress, &mut on_progress).await?;
        let name = file.name();
        if !set.add(&name, &bytes)? {
            return Err(DataError::Other(format!(
                "{name}: not a CIFAR-10 file (expected data_batch_N.bin, test_batch.bin or batches.meta.txt)"
            )));
        }
        kept.push((name, bytes));
    }
    let data = set.finish()?;
    remember(&kept).await;
    Ok(data)
}

/// The binary record layout of a split (label byte then pixels).
fn to_records(split: &data::Split) -> Vec<u8> {
    let mut out = Vec::with_capacity(split.len() * data::RECORD_BYTES);
    for i in 0..split.len() {
        out.push(split.labels[i]);
        out.extend_from_slice(split.image(i));
    }
    out
}
