#![no_main]
//! See `predictor::fuzzing::seed_json`.

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    predictor::fuzzing::seed_json(input);
});
