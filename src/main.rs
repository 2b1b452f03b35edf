//! The browser app's entry point: mounts the Leptos app. Natively it only points to the CLI.

#[cfg(target_arch = "wasm32")]
fn main() {
    cifar10_webgpu::web::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("This binary is the browser app: run it with `trunk serve` (see README.md).");
    eprintln!("For native training use: cargo run --release --bin train -- --help");
}
