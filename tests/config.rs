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

#[test]
fn recipe_presets_fill_every_trick_and_other_fields_override_them() {
    use cifar10_webgpu::config::{RECIPES, TRICK_FIELDS};
    let seed = TrainConfig::preset("seed").unwrap();
    assert_eq!(seed, TrainConfig::new());
    assert_eq!(seed.recipe_name(), Some("seed"));
    let fast = TrainConfig::preset("fast").unwrap();
    assert!(fast.validate().is_ok());
    assert_eq!((fast.epochs, fast.max_lr, fast.logit_scale, fast.label_smoothing, fast.tta), (10, 0.4, 0.125, 0.2, 2));
    assert!(fast.lookahead && fast.alternating_flip);
    assert_eq!(fast.peak_epoch, TrainConfig::scaled_peak(10));
    assert_eq!(fast.recipe_name(), Some("fast"));
    // Every trick is off in the seed recipe; the form shows each.
    for key in TRICK_FIELDS {
        assert!(cifar10_webgpu::config::FORM_FIELDS.iter().any(|(k, _)| *k == key), "{key} has no form field");
    }
    assert!(RECIPES.iter().all(|r| TrainConfig::preset(r).is_some()));

    // `?recipe=fast` sets them all, wherever it stands; the other fields given win.
    let (c, errors) = TrainConfig::from_pairs([("epochs", "6"), ("recipe", "fast"), ("width", "0.25"), ("tta", "1")]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!((c.epochs, c.width, c.tta, c.logit_scale, c.max_lr), (6, 0.25, 1, 0.125, 0.4));
    assert_eq!(c.peak_epoch, TrainConfig::scaled_peak(6));
    assert_eq!(c.recipe_name(), None);
    assert_eq!(c.field("recipe"), "custom");
    // The link says `recipe=fast` and only what differs from it, and comes back equal.
    let q = c.to_query();
    assert!(q.starts_with("recipe=fast&") && !q.contains("logit_scale"), "{q}");
    let pairs: Vec<(String, String)> = q.split('&').map(|kv| {
        let (k, v) = kv.split_once('=').unwrap();
        (k.to_string(), v.to_string())
    }).collect();
    let (again, e) = TrainConfig::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(e.is_empty());
    assert_eq!(again, c);
    assert_eq!(TrainConfig::preset("fast").unwrap().to_query(), "recipe=fast");

    // Unknown recipes and out-of-range tricks are named.
    let (_, errors) = TrainConfig::from_pairs([("recipe", "turbo"), ("label_smoothing", "1.5"), ("tta", "3"), ("logit_scale", "0"), ("lookahead", "maybe")]);
    let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["recipe", "label_smoothing", "tta", "logit_scale", "lookahead"]);
    assert!(errors[0].1.contains("seed, fast"), "{}", errors[0].1);
}
