//! The engine's front door: each `Command` from the page goes to the file of its concern. The
//! engine runs in a dedicated worker (`worker.rs`) or, with `?worker=0`, on the page's thread;
//! either way it takes `Command`s and reports `Update`s through one sink (`state.rs`), and knows
//! nothing of the page's signals.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::spawn_local;

use super::state::*;
use super::{actions, dataset, exports, predict, recovery, startup};
use crate::train::Control;
use crate::web::protocol::{Command, Phase, Place};

pub use super::host::WebHost;
pub use super::state::{emit, set_sink, with_engine};

/// Acts on one command from the page.
pub fn handle(command: Command, attachments: Vec<JsValue>) {
    match command {
        Command::Start(options) => spawn_local(startup::start(options)),
        Command::LoadUrl { url, files } => dataset::load_url(url, files),
        Command::LoadFiles => dataset::load_files(attachments.into_iter().filter_map(|f| f.dyn_into().ok()).collect()),
        Command::ClearCache => spawn_local(async {
            let ok = super::loader::clear_cache().await;
            say(Place::Data, false, if ok { "Cache cleared." } else { "Nothing was cached." });
        }),
        Command::Train(_) | Command::Benchmark { .. } | Command::FindLr { .. } => actions::gpu_action(command),
        Command::Pause => {
            if phase() == Phase::Running {
                control().set(Control::Pause);
            }
        }
        Command::Resume => {
            if phase() == Phase::Paused || control().get() == Control::Pause {
                control().set(Control::Run);
            }
        }
        Command::Stop => {
            if busy() {
                control().set(Control::Stop);
            }
        }
        Command::ContinueOnNewDevice => recovery::continue_on_new_device(),
        Command::ExportWeights { safetensors } => spawn_local(exports::export_weights(safetensors)),
        Command::ExportMetrics { csv } => exports::export_metrics(csv),
        Command::ImportWeights => {
            if let Some(file) = attachments.into_iter().find_map(|f| f.dyn_into::<web_sys::File>().ok()) {
                exports::import_weights(file);
            }
        }
        Command::Predict { planar } => spawn_local(predict::predict(planar)),
    }
}
