//! The form / query-parameter parsing shared by the page and demo links.
#![cfg(not(target_arch = "wasm32"))]

use cifar10_webgpu::config::TrainConfig;
use cifar10_webgpu::model::{largest_activation_bytes, max_batch_for};

#[test]
fn defaults_are_the_recipe() {
    let c = TrainConfig::new();
    assert_eq!((c.epochs, c.batch_size, c.peak_epoch), (24, 512, 5.0));
    assert_eq!((c.max_momentum, c.base_momentum, c.weight_decay), (0.95, 0.85, 5e-4));
    assert!(c.cutout && c.width == 1.0 && c.validate().is_ok());
    assert_eq!(c.to_query(), "");
}

#[test]
fn query_pairs_prefill_and_round_trip() {
    let pairs = [("epochs", "2"), ("batch", "64"), ("train_subset", "2000"), ("test_subset", "500"), ("max_lr", "0.05"), ("width", "0.25"), ("other", "x")];
    let (c, errors) = TrainConfig::from_pairs(pairs);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!((c.epochs, c.batch_size, c.train_subset, c.test_subset), (2, 64, Some(2000), Some(500)));
    assert_eq!((c.max_lr, c.width), (0.05, 0.25));
    // The peak keeps the recipe's 5/24 proportion when only the length is given.
    assert_eq!(c.peak_epoch, 0.4167);
    let q = c.to_query();
    let again: Vec<(String, String)> = q.split('&').map(|kv| {
        let (k, v) = kv.split_once('=').unwrap();
        (k.to_string(), v.to_string())
    }).collect();
    let (c2, e2) = TrainConfig::from_pairs(again.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(e2.is_empty());
    assert_eq!(c, c2);
}

#[test]
fn bad_values_name_their_field() {
    let (_, errors) = TrainConfig::from_pairs([("batch", "0"), ("max_lr", "abc"), ("width", "9"), ("cutout", "maybe"), ("train_subset", "-3")]);
    let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["batch", "max_lr", "width", "cutout", "train_subset"]);
    assert!(errors[1].1.contains("abc"));
}

#[test]
fn batch_limit_names_the_largest_batch_that_fits() {
    // 128 channels x 32 x 32 floats per image at width 1: 512 KiB.
    assert_eq!(largest_activation_bytes(512, 1.0), 256 << 20);
    assert_eq!(max_batch_for(128 << 20, 1.0), 256);
    assert_eq!(max_batch_for(128 << 20, 0.25), 1024);
}
