//! The page's side: Leptos components, their signals, the canvases, and the link that carries
//! commands to the engine and its updates back.

pub mod actions;
pub mod app;
pub mod charts;
pub mod link;
pub mod panic;
pub mod state;

/// Installs the panic hook and mounts the app on `<body>`.
pub fn mount() {
    panic::install_hook();
    leptos::mount::mount_to_body(app::App);
}
