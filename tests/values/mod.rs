//! Deterministic test inputs and the error measure shared by the convolution checks in the
//! browser (`tests/web.rs`) and on native Vulkan (`tests/gemm_native.rs`).
#![allow(dead_code)]

/// Deterministic values in [-1, 1) (a hash of the index, distinct per `salt`).
pub fn test_values(count: usize, salt: u32) -> Vec<f32> {
    (0..count as u32)
        .map(|i| {
            let mut h = i.wrapping_mul(0x9E37_79B9) ^ salt.wrapping_mul(0x85EB_CA6B);
            h ^= h >> 15;
            h = h.wrapping_mul(0x2C1B_3C6D);
            h ^= h >> 12;
            (h >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// max |a - b| / max |b|.
pub fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}
