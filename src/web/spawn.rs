//! Workers that run this same wasm: the engine's (started by the page, `page/link.rs`) and the
//! CPU helpers (started by the engine, `engine/pool.rs`). Each is a module worker from a `blob:`
//! script (no extra file to build or serve) that takes the address of the wasm-bindgen glue
//! and the compiled module by message, so nothing is fetched or compiled twice, and hands over
//! to one exported entry point with the messages that arrived meanwhile.

use wasm_bindgen::JsCast;

const BOOT: &str = r#"
const early = [];
let booted = false;
self.onmessage = (e) => {
  if (booted) { early.push(e.data); return; }
  booted = true;
  import(e.data.glue)
    .then(async (glue) => {
      await glue.default({ module_or_path: e.data.module });
      glue[e.data.entry](early);
    })
    .catch((err) => self.postMessage({ bootError: String((err && err.stack) || err) }));
};
"#;

/// A module worker running the boot script; set its handlers, then [`boot`] it.
pub fn module_worker() -> Result<web_sys::Worker, String> {
    let parts = js_sys::Array::of1(&BOOT.into());
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("text/javascript");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).map_err(|e| format!("{e:?}"))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))?;
    let worker_options = web_sys::WorkerOptions::new();
    worker_options.set_type(web_sys::WorkerType::Module);
    web_sys::Worker::new_with_options(&url, &worker_options).map_err(|e| format!("{e:?}"))
}

/// Starts this wasm in `worker` at the exported function `entry` (`fn(early: js_sys::Array)`).
pub fn boot(worker: &web_sys::Worker, entry: &str) -> Result<(), String> {
    let glue = glue_url().ok_or("the page's wasm glue was not found")?;
    let boot = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&boot, &"glue".into(), &glue.into());
    let _ = js_sys::Reflect::set(&boot, &"module".into(), &wasm_bindgen::module());
    let _ = js_sys::Reflect::set(&boot, &"entry".into(), &entry.into());
    worker.post_message(&boot).map_err(|e| format!("{e:?}"))
}

/// The address of the wasm-bindgen glue, whatever built the page (trunk, the test runner) and
/// wherever this runs (the page, a worker it started): the glue defines the JS side of every
/// import, so an `Error` made through one carries the glue's URL in its first stack frame.
pub fn glue_url() -> Option<String> {
    let stack = js_sys::Reflect::get(&js_sys::Error::new("where is the glue"), &"stack".into()).ok()?.as_string()?;
    stack.lines().skip_while(|l| !l.contains("://")).find_map(frame_url)
}

/// The script URL of one stack frame (`at f (URL:line:col)` or `f@URL:line:col`).
fn frame_url(line: &str) -> Option<String> {
    let scheme = line.find("://")?;
    let start = line[..scheme].rfind(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '+').map_or(0, |i| i + 1);
    let rest = line[start..].trim_end().trim_end_matches(')');
    // Strip `:line:col`.
    let (rest, col) = rest.rsplit_once(':')?;
    let (url, row) = rest.rsplit_once(':')?;
    (col.chars().all(|c| c.is_ascii_digit()) && row.chars().all(|c| c.is_ascii_digit())).then(|| url.to_string())
}

/// A `Float32Array` copy of `values` (its buffer can then be transferred).
pub fn floats(values: &[f32]) -> js_sys::Float32Array {
    js_sys::Float32Array::from(values)
}

/// The `Float32Array` at `key` of a message, copied into wasm memory (empty when absent).
pub fn read_floats(message: &wasm_bindgen::JsValue, key: &str) -> Vec<f32> {
    js_sys::Reflect::get(message, &key.into())
        .ok()
        .and_then(|v| v.dyn_into::<js_sys::Float32Array>().ok())
        .map(|a| a.to_vec())
        .unwrap_or_default()
}
