//! `cargo run --release --bin train -- --help`: native training and the step benchmark.
//! (The browser build skips it: the CLI reads files and uses native backends.)

#[cfg(not(target_arch = "wasm32"))]
#[path = "train/cli.rs"]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    cli::main();
}

#[cfg(target_arch = "wasm32")]
fn main() {}
