//! The engine's side: it takes `Command`s and reports `Update`s (`protocol.rs`) and knows
//! nothing of the page's signals. It runs in a dedicated worker (`worker.rs`) or, with
//! `?worker=0`, on the page's thread. One concern a file:
//! - `commands.rs`: each command to its file; `state.rs`: what the engine holds, its phase,
//!   its sink;
//! - `startup.rs`: the device (WebGPU or the CPU), its self-test, the CPU's helper workers
//!   (`pool.rs`, each running `helper.rs`); `device.rs`, `gpu.rs`: the two devices' details;
//! - `dataset.rs` (with `loader.rs`): CIFAR-10 in;
//! - `actions.rs`: train, benchmark or LR finder now or after the self-test; `checks.rs`,
//!   `limits.rs`: what they need; `conv.rs`: the automatic convolution choice;
//!   `training.rs`, `bench.rs`, `lr.rs`: the three; `host.rs`: the loops' host;
//! - `recovery.rs`: a run continued on a new device; `exports.rs`, `predict.rs`.

pub mod actions;
pub mod bench;
pub mod checks;
pub mod commands;
pub mod conv;
pub mod dataset;
pub mod device;
pub mod exports;
pub mod gpu;
pub mod helper;
pub mod host;
pub mod limits;
pub mod loader;
pub mod lr;
pub mod pool;
pub mod predict;
pub mod recovery;
pub mod startup;
pub mod state;
pub mod training;
pub mod worker;
