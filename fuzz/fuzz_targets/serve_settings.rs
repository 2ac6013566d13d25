//! `whence serve`'s request parsing that needs no model: the body is parsed
//! as a JSON object and checked by `whence_serve::api::settings` (the
//! prompt, `handle` and the HTTP layer need a loaded checkpoint).
#![no_main]

use libfuzzer_sys::fuzz_target;
use whence_serve::api::{settings, MAX_N, MAX_TOP};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) else { return };
    if let Ok(settings) = settings(&body) {
        assert!((1..=MAX_N).contains(&settings.n), "n {} accepted", settings.n);
        assert!(settings.logprobs.is_none_or(|k| k <= MAX_TOP));
        assert!(settings.prompt_logprobs.is_none_or(|k| k <= MAX_TOP));
    }
});
