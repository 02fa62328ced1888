#![no_main]
//! See `predictor::fuzzing::v2_json`.

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    predictor::fuzzing::v2_json(input);
});
