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

/// The split of a batch too big for one storage binding: the fewest passes that fit, images
/// dealt out evenly, and a refusal with the figures only when one image does not fit.
#[test]
fn micro_batches_are_the_fewest_that_fit_the_binding_limit() {
    use cifar10_webgpu::micro::{micro_batches, split_sizes, split_summary, MicroBatches};
    use cifar10_webgpu::model::{largest_activation_bytes_with, ConvAlgorithm};
    const MIB: u64 = 1 << 20;
    // Width 1, burn's convolutions: 512 KiB an image, so WebGPU's minimum of 128 MiB holds 256.
    let split = micro_batches(512, 1.0, ConvAlgorithm::Burn, 128 * MIB).unwrap();
    assert_eq!(split, MicroBatches { batch: 512, count: 2, size: 256 });
    assert_eq!((split.micro_batch(), split.summary().as_str()), (Some(256), "512 as 2 x 256"));
    // A batch that fits runs whole: no micro-batch setting, the unsplit path.
    let whole = micro_batches(512, 1.0, ConvAlgorithm::Burn, 256 * MIB).unwrap();
    assert_eq!((whole.count, whole.micro_batch(), whole.summary().as_str()), (1, None, "512"));
    // im2col's column matrix is 9 x 64 floats a pixel, 4.5x burn's 128: 2.25 MiB an image, 56
    // in 128 MiB, so 10 passes; 9 would need 57 images in one.
    assert_eq!(largest_activation_bytes_with(ConvAlgorithm::Im2col, 1, 1.0) * 2, 9 * largest_activation_bytes_with(ConvAlgorithm::Burn, 1, 1.0));
    let im2col = micro_batches(512, 1.0, ConvAlgorithm::Im2col, 128 * MIB).unwrap();
    assert_eq!((im2col.count, im2col.size, im2col.summary().as_str()), (10, 52, "512 as 10 x 51-52"));
    assert!(largest_activation_bytes_with(ConvAlgorithm::Im2col, 52, 1.0) <= 128 * MIB);
    assert!(largest_activation_bytes_with(ConvAlgorithm::Im2col, 57, 1.0) > 128 * MIB);

    // Fewest, for every batch and limit in a sweep: the largest pass fits, one pass fewer
    // would not, and the passes add up to the batch and differ by at most one image.
    for algorithm in [ConvAlgorithm::Burn, ConvAlgorithm::Im2col] {
        for batch in [1, 7, 64, 100, 511, 512, 513, 4096] {
            for limit_kib in [600u64, 1024, 5000, 32 << 10, 128 << 10, 1 << 21] {
                let limit = limit_kib << 10;
                let Ok(s) = micro_batches(batch, 1.0, algorithm, limit) else {
                    assert!(largest_activation_bytes_with(algorithm, 1, 1.0) > limit);
                    continue;
                };
                assert!(largest_activation_bytes_with(algorithm, s.size, 1.0) <= limit, "{s:?} at {limit}");
                if s.count > 1 {
                    assert!(largest_activation_bytes_with(algorithm, batch.div_ceil(s.count - 1), 1.0) > limit, "{s:?}: fewer fit");
                }
                let sizes = split_sizes(batch, s.micro_batch());
                assert_eq!((sizes.len(), sizes.iter().sum::<usize>(), sizes[0]), (s.count, batch, s.size), "{s:?}");
                assert!(sizes.iter().all(|&n| n + 1 >= s.size && n <= s.size), "{sizes:?}");
            }
        }
    }
    // By count, not by cutting full passes: 512 at most 200 a pass is 171 + 171 + 170, not
    // 200 + 200 + 112.
    assert_eq!(split_sizes(512, Some(200)), [171, 171, 170]);
    assert_eq!(split_sizes(64, Some(64)), [64]);
    assert_eq!(split_sizes(64, None), [64]);
    assert_eq!(split_sizes(64, Some(16)), [16; 4]);
    assert_eq!(split_summary(500, Some(167)), "500 as 3 x 166-167");

    // One image that does not fit is refused with the figures (and, for im2col, the way out).
    let err = micro_batches(512, 1.0, ConvAlgorithm::Burn, 256 << 10).unwrap_err();
    assert!(err.contains("one image needs a 0.50 MiB buffer") && err.contains("allows 0.25 MiB per binding"), "{err}");
    assert!(err.contains("width 1") && err.contains("burn convolutions"), "{err}");
    let err = micro_batches(64, 1.0, ConvAlgorithm::Im2col, MIB).unwrap_err();
    assert!(err.contains("2.25 MiB") && err.contains("1.00 MiB") && err.contains("burn's convolutions, which need 0.50 MiB"), "{err}");
    assert!(micro_batches(0, 1.0, ConvAlgorithm::Burn, MIB).is_err());
}

/// `micro_batch` is the device's business, not the recipe's: no form field, no query
/// parameter, but serialised with the config (the run log records it), and a config saved
/// before the field existed still loads.
#[test]
fn micro_batch_stays_out_of_the_form_but_in_the_log() {
    let c = TrainConfig::new().with_batch_size(64).with_micro_batch(Some(16));
    assert!(c.validate().is_ok());
    assert_eq!(c.to_query(), "batch=64");
    assert!(!cifar10_webgpu::config::FORM_FIELDS.iter().any(|(k, _)| k.contains("micro")));
    let (from_link, errors) = TrainConfig::from_pairs([("batch", "64"), ("micro_batch", "16")]);
    assert!(errors.is_empty() && from_link.micro_batch.is_none(), "{errors:?}");
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["micro_batch"], 16);
    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("micro_batch");
    let loaded: TrainConfig = serde_json::from_value(old).unwrap();
    assert_eq!(loaded.micro_batch, None);
    assert_eq!(serde_json::from_value::<TrainConfig>(json).unwrap(), c);
    // Evaluation passes are capped at it too; zero images a pass is refused.
    assert_eq!((c.eval_pass(), TrainConfig::new().eval_pass()), (16, 500));
    assert!(TrainConfig::new().with_micro_batch(Some(0)).validate().unwrap_err().contains("micro_batch"));
}
