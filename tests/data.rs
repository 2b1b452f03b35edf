//! Parser, tarball and augmentation tests on the real CIFAR-10 files.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::io::Write;

use cifar10_webgpu::augment::{self, crop_flip, cutout_window, Augment, Normalization};
use cifar10_webgpu::data::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A tar.gz with the given (name, bytes) entries.
fn tarball(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        // Raw name bytes: the builder refuses `..`, which is exactly what a hostile archive holds.
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, *bytes).unwrap();
    }
    gzip(&builder.into_inner().unwrap())
}

/// Ten thousand real records: the 2,000 sample train records repeated five times.
fn official_shard() -> Vec<u8> {
    common::read_sample("train_2000.bin").repeat(5)
}

#[test]
fn parses_real_sample_shards() {
    let train = Split::parse("train_2000.bin", &common::read_sample("train_2000.bin")).unwrap();
    let test = Split::parse("test_500.bin", &common::read_sample("test_500.bin")).unwrap();
    assert_eq!(train.len(), 2000);
    assert_eq!(test.len(), 500);
    assert_eq!(train.images.len(), 2000 * IMAGE_BYTES);
    // Real data holds every class and is not constant.
    let mut counts = [0; 10];
    for &l in &train.labels {
        counts[l as usize] += 1;
    }
    assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
    let img = train.image(0);
    assert!(img.iter().min() < img.iter().max());
    let names = parse_class_names(&String::from_utf8(common::read_sample("batches.meta.txt")).unwrap());
    assert_eq!(names[0], "airplane");
    assert_eq!(names[9], "truck");
}

#[test]
fn full_tarball_loads_50000_and_10000() {
    let t = std::time::Instant::now();
    let file = std::fs::File::open(common::tarball()).unwrap();
    let mut seen = Vec::new();
    let data = read_tarball(file, |n| seen.push(n.to_string())).unwrap();
    println!("full tarball parsed natively in {:.2}s", t.elapsed().as_secs_f64());
    assert_eq!(data.train.len(), 50_000);
    assert_eq!(data.test.len(), 10_000);
    assert_eq!(data.class_names.len(), 10);
    assert!(seen.contains(&"test_batch.bin".to_string()));
    // The sample is the first 2,000 records of data_batch_1.
    let sample = Split::parse("s", &common::read_sample("train_2000.bin")).unwrap();
    assert_eq!(&data.train.images[..IMAGE_BYTES * 2000], &sample.images[..]);
}

#[test]
fn rejects_what_is_not_gzip() {
    let err = read_tarball(&b"hello, this is a text file"[..], |_| {}).unwrap_err();
    assert!(matches!(err, DataError::NotGzip(_)), "{err}");
    assert!(err.to_string().contains("gzip"));
}

#[test]
fn rejects_gzip_that_is_not_tar() {
    let err = read_tarball(&gzip(&[7u8; 5000])[..], |_| {}).unwrap_err();
    assert!(matches!(err, DataError::BadTar(_) | DataError::Missing { .. }), "{err}");
}

#[test]
fn rejects_truncated_tarball() {
    let shard = official_shard();
    let full = tarball(&[("cifar-10-batches-bin/data_batch_1.bin", &shard)]);
    let cut = &full[..full.len() / 2];
    let err = read_tarball(cut, |_| {}).unwrap_err();
    assert!(matches!(err, DataError::NotGzip(_) | DataError::BadTar(_)), "{err}");
}

#[test]
fn rejects_corrupt_gzip() {
    let shard = official_shard();
    let mut bytes = tarball(&[("cifar-10-batches-bin/test_batch.bin", &shard)]);
    let mid = bytes.len() / 3;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    assert!(read_tarball(&bytes[..], |_| {}).is_err());
}

#[test]
fn rejects_shard_with_wrong_record_count() {
    let mut set = ShardSet::new();
    let short = &official_shard()[..RECORD_BYTES * 9_999];
    let err = set.add("data_batch_1.bin", short).unwrap_err();
    assert_eq!(err, DataError::WrongRecordCount { name: "data_batch_1.bin".into(), records: 9_999 });
    let err = set.add("data_batch_2.bin", &official_shard()[..RECORD_BYTES * 10 + 5]).unwrap_err();
    assert!(matches!(err, DataError::NotRecords { .. }));
}

#[test]
fn rejects_label_above_nine() {
    let mut bytes = common::read_sample("test_500.bin");
    bytes[RECORD_BYTES * 3] = 10;
    let err = Split::parse("test_500.bin", &bytes).unwrap_err();
    assert_eq!(err, DataError::BadLabel { name: "test_500.bin".into(), record: 3, label: 10 });
}

#[test]
fn rejects_missing_and_duplicated_shards() {
    let shard = official_shard();
    // Train shards without the test shard.
    let entries: Vec<(String, &[u8])> = TRAIN_SHARDS
        .iter()
        .map(|n| (format!("cifar-10-batches-bin/{n}"), &shard[..]))
        .collect();
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let err = read_tarball(&tarball(&refs)[..], |_| {}).unwrap_err();
    assert_eq!(err, DataError::Missing { names: vec!["test_batch.bin".into()] });
    // Test shard and four train shards.
    let mut four = refs[..4].to_vec();
    four.push(("cifar-10-batches-bin/test_batch.bin", &shard));
    let err = read_tarball(&tarball(&four)[..], |_| {}).unwrap_err();
    assert_eq!(err, DataError::Missing { names: vec!["data_batch_5.bin".into()] });
    // The same shard twice.
    let twice = [("a/test_batch.bin", &shard[..]), ("b/test_batch.bin", &shard[..])];
    let err = read_tarball(&tarball(&twice)[..], |_| {}).unwrap_err();
    assert_eq!(err, DataError::Duplicate { name: "test_batch.bin".into() });
}

#[test]
fn ignores_unexpected_entries_and_loads_the_rest() {
    let train = common::read_sample("train_2000.bin");
    let test = common::read_sample("test_500.bin");
    let meta = common::read_sample("batches.meta.txt");
    let bytes = tarball(&[
        ("../../etc/passwd", b"root:x:0:0"),
        ("cifar-10-batches-bin/readme.html", b"<html>"),
        ("cifar-10-batches-bin/train_2000.bin", &train),
        ("cifar-10-batches-bin/test_500.bin", &test),
        ("cifar-10-batches-bin/batches.meta.txt", &meta),
    ]);
    let data = read_tarball(&bytes[..], |_| {}).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (2000, 500));
}

#[test]
fn stops_inflating_at_the_shard_size() {
    // 40 MB of zeros compresses to ~40 kB: a zip bomb in miniature.
    let big = vec![0u8; SHARD_BYTES + RECORD_BYTES * 3000];
    let bytes = tarball(&[("cifar-10-batches-bin/data_batch_1.bin", &big)]);
    assert!(bytes.len() < 200_000);
    let err = read_tarball(&bytes[..], |_| {}).unwrap_err();
    assert_eq!(err, DataError::TooLarge { name: "data_batch_1.bin".into() });
}

#[test]
fn a_good_file_loads_after_a_bad_one() {
    assert!(read_tarball(&b"junk"[..], |_| {}).is_err());
    let train = common::read_sample("train_2000.bin");
    let test = common::read_sample("test_500.bin");
    let ok = tarball(&[("train_2000.bin", &train), ("test_500.bin", &test)]);
    assert!(read_tarball(&ok[..], |_| {}).is_ok());
}

fn sample() -> Split {
    Split::parse("train_2000.bin", &common::read_sample("train_2000.bin")).unwrap()
}

#[test]
fn crop_stays_inside_the_padded_image() {
    let split = sample();
    let src = split.image(5);
    let mut out = [0u8; IMAGE_BYTES];
    // The centre crop is the image itself.
    crop_flip(src, 4, 4, false, &mut out);
    assert_eq!(&out[..], src);
    // Offset (0, 0): row y of the output is row reflect(y - 4) of the source.
    crop_flip(src, 0, 8, false, &mut out);
    for c in 0..3 {
        for y in 0..32 {
            let sy = if y < 4 { 4 - y } else { y - 4 };
            for x in 0..32 {
                let sx = if x + 4 > 31 { 62 - (x + 4) } else { x + 4 };
                assert_eq!(out[c * 1024 + y * 32 + x], src[c * 1024 + sy * 32 + sx]);
            }
        }
    }
    // Every pixel of every crop comes from the source image (reflect padding adds no colour).
    for dy in 0..=8 {
        for dx in 0..=8 {
            crop_flip(src, dy, dx, dy % 2 == 0, &mut out);
            for c in 0..3 {
                let plane = &src[c * 1024..(c + 1) * 1024];
                assert!(out[c * 1024..(c + 1) * 1024].iter().all(|p| plane.contains(p)));
            }
        }
    }
}

#[test]
fn flip_is_an_exact_mirror() {
    let split = sample();
    let src = split.image(11);
    let mut plain = [0u8; IMAGE_BYTES];
    let mut flipped = [0u8; IMAGE_BYTES];
    crop_flip(src, 4, 4, false, &mut plain);
    crop_flip(src, 4, 4, true, &mut flipped);
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                assert_eq!(flipped[c * 1024 + y * 32 + x], plain[c * 1024 + y * 32 + 31 - x]);
            }
        }
    }
    assert_ne!(plain, flipped);
}

#[test]
fn cutout_zeroes_exactly_the_clipped_window() {
    assert_eq!(cutout_window(0, 0), (0, 4, 0, 4));
    assert_eq!(cutout_window(31, 10), (27, 32, 6, 14));
    assert_eq!(cutout_window(16, 16), (12, 20, 12, 20));
    let split = sample();
    let norm = Normalization::from_split(&split);
    let aug = Augment { cutout: true, ..Augment::NONE };
    let plain = Augment::NONE;
    for seed in 0..20 {
        let mut rng = augment::rng(seed, 0);
        let cut = augment::make_batch(&split, &[seed as usize], aug, &norm, &mut rng);
        let mut rng = augment::rng(seed, 0);
        let orig = augment::make_batch(&split, &[seed as usize], plain, &norm, &mut rng);
        // Reconstruct the window the RNG drew: the same draws in the same order.
        let mut rng = augment::rng(seed, 0);
        use rand::Rng;
        let (cy, cx) = (rng.random_range(0..32usize), rng.random_range(0..32usize));
        let (y0, y1, x0, x1) = cutout_window(cy, cx);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    let i = c * 1024 + y * 32 + x;
                    if (y0..y1).contains(&y) && (x0..x1).contains(&x) {
                        assert_eq!(cut.images[i], 0.0);
                    } else {
                        assert_eq!(cut.images[i], orig.images[i]);
                    }
                }
            }
        }
    }
}

#[test]
fn normalised_train_set_has_zero_mean_unit_std() {
    let split = sample();
    let norm = Normalization::from_split(&split);
    let indices: Vec<usize> = (0..split.len()).collect();
    let batch = augment::make_batch(&split, &indices, Augment::NONE, &norm, &mut augment::rng(0, 0));
    for c in 0..3 {
        let vals: Vec<f64> = batch
            .images
            .chunks_exact(IMAGE_BYTES)
            .flat_map(|img| img[c * 1024..(c + 1) * 1024].iter().map(|&v| v as f64))
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
        assert!(mean.abs() < 1e-3, "channel {c} mean {mean}");
        assert!((std - 1.0).abs() < 1e-3, "channel {c} std {std}");
    }
}

#[test]
fn augmentation_is_deterministic_per_seed() {
    let split = sample();
    let norm = Normalization::from_split(&split);
    let idx: Vec<usize> = (0..64).collect();
    let a = augment::make_batch(&split, &idx, Augment::FULL, &norm, &mut augment::rng(3, 1));
    let b = augment::make_batch(&split, &idx, Augment::FULL, &norm, &mut augment::rng(3, 1));
    let c = augment::make_batch(&split, &idx, Augment::FULL, &norm, &mut augment::rng(4, 1));
    assert_eq!(a.images, b.images);
    assert_ne!(a.images, c.images);
    assert_eq!(augment::epoch_batches(2000, 512, 1, 0), augment::epoch_batches(2000, 512, 1, 0));
    assert_ne!(augment::epoch_batches(2000, 512, 1, 0), augment::epoch_batches(2000, 512, 1, 1));
}

#[test]
fn alternating_flip_mirrors_each_image_in_the_next_epoch() {
    let split = sample();
    let norm = Normalization::from_split(&split);
    let idx: Vec<usize> = (0..64).collect();
    let at = |epoch: usize| Augment { crop: false, flip: true, cutout: false, alternating: Some((7, epoch)) };
    let rng = || augment::rng(0, 0);
    let e0 = augment::make_batch(&split, &idx, at(0), &norm, &mut rng());
    let e1 = augment::make_batch(&split, &idx, at(1), &norm, &mut rng());
    let e2 = augment::make_batch(&split, &idx, at(2), &norm, &mut rng());
    let plain = augment::make_batch(&split, &idx, Augment::NONE, &norm, &mut rng());
    let mirror = |img: &[f32]| -> Vec<f32> {
        img.chunks_exact(32).flat_map(|row| row.iter().rev().copied().collect::<Vec<_>>()).collect()
    };
    let n = IMAGE_BYTES;
    let mut flipped = 0;
    for k in 0..idx.len() {
        let (a, b, c, p) = (&e0.images[k * n..(k + 1) * n], &e1.images[k * n..(k + 1) * n], &e2.images[k * n..(k + 1) * n], &plain.images[k * n..(k + 1) * n]);
        // Odd epochs see the other side of every image; even epochs repeat epoch 0.
        assert_eq!(mirror(a), b, "image {k}");
        assert_eq!(a, c, "image {k}");
        if a != p {
            flipped += 1;
        }
    }
    // Each image's own bit: about half start mirrored (64 images: 32 +- 4 standard deviations).
    assert!((16..=48).contains(&flipped), "{flipped} of 64 mirrored in epoch 0");
}
