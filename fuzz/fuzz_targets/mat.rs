//! Any bytes given as a MAT file are arrays or an error with a byte offset, never a panic. Raw
//! bytes rarely form a header, so the input also damages a small valid file (plain or
//! compressed, XOR at chosen offsets) before it is read.
#![no_main]
use faceforge::io::mat::{parse, write, MatType};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    if let Ok(arrays) = parse("fuzz.mat", bytes) {
        for a in arrays.values() {
            assert_eq!(Some(a.data.len()), a.dims.iter().try_fold(1usize, |p, &d| p.checked_mul(d)));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.is_empty() {
        return;
    }
    let values: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let mut bytes = write(&[("shapeMU", vec![12, 1], &values, MatType::Double), ("tl", vec![4, 3], &values, MatType::Int32), ("x", vec![2, 6], &values, MatType::Single)], data[0] & 1 == 1);
    for change in data[1..].chunks_exact(5) {
        let at = u32::from_le_bytes([change[0], change[1], change[2], change[3]]) as usize % bytes.len();
        bytes[at] ^= change[4];
    }
    check(&bytes);
});
