//! Any bytes given as an HDF5 file are datasets or an error, never a panic. Raw bytes rarely
//! form a superblock, so the input also damages the BFM 2017-layout file the tests use (written
//! by the HDF5 library through h5py) before it is read.
#![no_main]
use libfuzzer_sys::fuzz_target;

const FAKE: &[u8] = include_bytes!("../../tests/data/bfm2017_fake.h5");

fuzz_target!(|data: &[u8]| {
    let _ = faceforge::io::hdf5::parse("fuzz.h5", data);
    let mut bytes = FAKE.to_vec();
    for change in data.chunks_exact(5) {
        let at = u32::from_le_bytes([change[0], change[1], change[2], change[3]]) as usize % bytes.len();
        bytes[at] ^= change[4];
    }
    if let Ok(sets) = faceforge::io::hdf5::parse("fuzz.h5", &bytes) {
        for d in sets.values() {
            assert_eq!(Some(d.data.len()), d.shape.iter().try_fold(1usize, |p, &s| p.checked_mul(s)));
        }
    }
});
