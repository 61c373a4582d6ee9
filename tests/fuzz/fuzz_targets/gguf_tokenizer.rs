//! A GGUF's tokenizer metadata -> SentencePiece encoder (`Tokenizer::from_gguf_metadata`),
//! then encoding and decoding. The bytes are read as a structured vocabulary (the GGUF
//! container itself is fuzzed by the `gguf` target): a flag byte for the optional keys, then
//! pieces of (type byte, score byte, length byte, text), then the special ids.
#![no_main]
use grokit::tokenizer::{GgufVocab, Tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut tokens = Vec::new();
    let mut scores = Vec::new();
    let mut types = Vec::new();
    let mut ids = [None; 4];
    while let [ty, sc, len, tail @ ..] = rest {
        if *ty == 0xff {
            // the special ids: unk, bos, eos, pad, one byte each (0xff = absent)
            for (k, b) in tail.iter().take(4).enumerate() {
                ids[k] = (*b != 0xff).then_some(u64::from(*b));
            }
            break;
        }
        let n = usize::from(*len % 16).min(tail.len());
        tokens.push(String::from_utf8_lossy(&tail[..n]).into_owned());
        scores.push(f32::from(*sc as i8) / 4.0);
        types.push(i32::from(*ty % 8));
        rest = &tail[n..];
    }
    let v = GgufVocab {
        model: if flags & 1 == 0 { "llama" } else { "gpt2" },
        tokens: &tokens,
        scores: (flags & 2 == 0).then_some(scores.as_slice()),
        token_types: (flags & 4 == 0).then_some(types.as_slice()),
        unknown_token_id: ids[0],
        bos_token_id: ids[1],
        eos_token_id: ids[2],
        padding_token_id: ids[3],
        add_space_prefix: Some(flags & 8 == 0),
        remove_extra_whitespaces: Some(flags & 16 != 0),
        precompiled_charsmap: (flags & 32 != 0).then_some(&[][..]),
    };
    if let Ok(t) = Tokenizer::from_gguf_metadata(&v, "fuzz.gguf") {
        for text in ["Hello, wörld! 12345 <s>\n\t  grok", "", "  ", "\u{1F389}abc"] {
            let ids = t.encode(text);
            assert!(ids.iter().all(|&i| (i as usize) < t.len()));
            let _ = t.decode(&ids);
        }
    }
});
