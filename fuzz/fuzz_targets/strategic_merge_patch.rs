#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kaji_fuzz::strategic_merge_patch(data));
