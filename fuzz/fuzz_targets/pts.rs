//! Any bytes given as an iBUG `.pts` file are landmarks or an error naming a line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = faceforge::io::outputs::parse_pts("fuzz.pts", &text) {
        assert!(e.line >= 1, "{e}");
    }
});
