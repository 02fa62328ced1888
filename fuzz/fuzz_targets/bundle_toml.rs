#![no_main]
//! See `predictor::fuzzing::bundle_toml`.

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    predictor::fuzzing::bundle_toml(input);
});
