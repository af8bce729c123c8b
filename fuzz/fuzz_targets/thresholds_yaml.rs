#![no_main]
//! The thresholds file is reloaded while running: no text may panic the loader, and whatever
//! it accepts must pass its own validation.

use auren_core::engine::config::EngineConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = EngineConfig::from_yaml(text) {
            cfg.validate().expect("a loaded config validates");
        }
    }
});
