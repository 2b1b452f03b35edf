//! The engine's side: it takes `Command`s and reports `Update`s (`protocol.rs`) and knows
//! nothing of the page's signals. It runs in a dedicated worker (`worker.rs`) or, with
//! `?worker=0`, on the page's thread.

pub mod commands;
pub mod device;
pub mod gpu;
pub mod helper;
pub mod loader;
pub mod pool;
pub mod worker;
