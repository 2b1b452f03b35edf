//! Train the seed's ResNet-9 on CIFAR-10 with burn, natively or in the browser on WebGPU.
//!
//! The engine (everything but `web`) is backend-agnostic and knows nothing of the UI.

pub mod augment;
pub mod bench;
pub mod config;
pub mod conv_choice;
pub mod ctors;
pub mod data;
#[cfg(not(target_arch = "wasm32"))]
pub mod fuzz;
pub mod kernels;
pub mod lr_finder;
pub mod metrics;
pub mod micro;
pub mod model;
pub mod optim;
pub mod pass;
pub mod replicas;
#[cfg(not(target_arch = "wasm32"))]
pub mod resume;
pub mod saved;
pub mod schedule;
pub mod selftest;
pub mod train;
pub mod tricks;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;
