//! Byte-level BPE tokenizers trained on a model's own corpus with the
//! `tokenizers` crate, and the tokenizer files of a checkpoint.

use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer, TokenizerBuilder};

use crate::TrainError;

/// The end-of-text token (padding).
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// Starts a chat turn.
pub const TURN_START: &str = "<|im_start|>";
/// Ends a chat turn; generation stops at it (the checkpoint's EOS).
pub const TURN_END: &str = "<|im_end|>";

/// The chat template of every demo checkpoint: ChatML, as Qwen2.5's
/// without the default system turn.
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Qwen2's pre-tokenizer pattern (digits one by one). `transformers` 5
/// loads every `qwen2` checkpoint's tokenizer with this pattern whatever
/// `tokenizer.json` says, so a tokenizer trained with another one would
/// tokenize differently there.
pub const PRETOKENIZE_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Trains a byte-level BPE of at most `vocab_size` entries, the three
/// special tokens included, on `texts`, with Qwen2's pre-tokenizer (its
/// split pattern, then byte-level without a prefix space). The result
/// depends only on the texts and the size.
pub fn train_tokenizer<S: AsRef<str> + Send>(texts: impl Iterator<Item = S> + Send, vocab_size: usize) -> Result<Tokenizer, TrainError> {
    let failed = |e: tokenizers::Error| TrainError::Tokenizer(e.to_string());
    let specials: Vec<AddedToken> = [END_OF_TEXT, TURN_START, TURN_END].iter().map(|t| AddedToken::from(*t, true)).collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(specials.clone())
        .build();
    let byte_level = ByteLevel::default().add_prefix_space(false).trim_offsets(false).use_regex(false);
    let split = Split::new(SplitPattern::Regex(PRETOKENIZE_PATTERN.into()), SplitDelimiterBehavior::Isolated, false).map_err(failed)?;
    let pre_tokenizer = PreTokenizerWrapper::Sequence(Sequence::new(vec![split.into(), byte_level.into()]));
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_post_processor(Some(byte_level))
        .with_decoder(Some(byte_level))
        .build()
        .map_err(failed)?;
    tokenizer.train(&mut trainer, texts).map_err(failed)?;
    let mut tokenizer = Tokenizer::from(tokenizer);
    tokenizer.add_special_tokens(specials).map_err(failed)?;
    Ok(tokenizer)
}

/// The id of a special token of a tokenizer made by [`train_tokenizer`].
pub fn special_id(tokenizer: &Tokenizer, token: &str) -> Result<u32, TrainError> {
    tokenizer.token_to_id(token).ok_or_else(|| TrainError::Tokenizer(format!("the tokenizer has no `{token}` token")))
}

/// Writes `tokenizer.json` and `tokenizer_config.json` (chat template, EOS
/// `<|im_end|>`, padding `<|endoftext|>`, no BOS) into `dir`.
pub fn write_tokenizer_files(dir: &Path, tokenizer: &Tokenizer, max_length: usize) -> Result<(), TrainError> {
    let json = tokenizer.to_string(true).map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    crate::write_file(&dir.join("tokenizer.json"), json.as_bytes())?;
    let mut added = serde_json::Map::new();
    for token in [END_OF_TEXT, TURN_START, TURN_END] {
        let id = special_id(tokenizer, token)?;
        added.insert(
            id.to_string(),
            serde_json::json!({"content": token, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}),
        );
    }
    let config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": null,
        "eos_token": TURN_END,
        "pad_token": END_OF_TEXT,
        "unk_token": null,
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": false,
        "chat_template": CHAT_TEMPLATE,
    });
    crate::write_file(&dir.join("tokenizer_config.json"), serde_json::to_string_pretty(&config)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        (0..200).map(|i| format!("Ana has {} apples.\nAfter buying {} more, Ana has {} apples.", i % 30, i % 9, i % 30 + i % 9)).collect()
    }

    #[test]
    fn round_trips_text_with_byte_offsets_and_is_deterministic() {
        let a = train_tokenizer(corpus().iter(), 300).unwrap();
        let b = train_tokenizer(corpus().iter(), 300).unwrap();
        assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
        assert!(a.get_vocab_size(true) <= 300 && a.get_vocab_size(true) > 259);
        let text = "<|im_start|>user\nBen has 7 coins.<|im_end|>\n<|im_start|>assistant\nAfter buying 3 more, Ben has 10 coins.<|im_end|>";
        let encoding = a.encode(text, false).unwrap();
        assert_eq!(a.decode(encoding.get_ids(), false).unwrap(), text);
        let ids = encoding.get_ids();
        assert_eq!(ids[0], special_id(&a, TURN_START).unwrap());
        assert_eq!(*ids.last().unwrap(), special_id(&a, TURN_END).unwrap());
        // Offsets are byte spans that tile the text.
        let mut end = 0;
        for &(s, e) in encoding.get_offsets() {
            assert_eq!(s, end);
            end = e;
        }
        assert_eq!(end, text.len());
    }
}
