#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::cosigned_checkpoint(data));
