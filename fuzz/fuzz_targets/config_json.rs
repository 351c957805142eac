//! config.json: parsing, architecture detection and every derived size a model build reads.
#![no_main]

use genolens::model::config::ModelConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = ModelConfig::from_json(text) {
        let _ = config.head_dim();
        let _ = config.max_tokens();
        let _ = config.classifier_labels();
        let _ = config.dnabert_k();
        let _ = config.rotary();
        let _ = config.gated_mlp();
        let _ = config.class_names();
        let _ = config.to_json();
    }
});
