//! Tokenizers built from tokenizer.json and from GGUF metadata ("gpt2" byte-level BPE
//! and "llama" SentencePiece), and chat-template rendering.

mod common;

use boha::loaders::gguf::GgufFile;
use boha::loaders::tokenizer::{self, render_chat_template, ChatMessage, TokenizerConfig};
use common::tiny_checkpoint::{
    gpt2_byte_chars, temp_dir, GgufWriter, TinyTokenizer, CHATML_TEMPLATE,
};
use serde_json::json;

fn pieces(tok: &tokenizers::Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect()
}

#[test]
fn hf_tokenizer_json_round_trip() {
    let t = TinyTokenizer::new();
    let path = temp_dir("tok-hf").join("tokenizer.json");
    std::fs::write(&path, t.tokenizer_json().to_string()).unwrap();
    let tok = tokenizers::Tokenizer::from_file(&path).unwrap();
    let ids = tokenizer::encode(&tok, "What is the capital of France?").unwrap();
    assert_eq!(
        pieces(&tok, &ids),
        ["What", "Ġis", "Ġthe", "Ġcapital", "Ġof", "ĠFrance", "?"]
    );
    // Specials written in the text are single tokens; nothing is added around the text.
    let ids = tokenizer::encode(&tok, "<|im_start|>user\ncats<|im_end|>").unwrap();
    assert_eq!(ids.first(), Some(&t.id("<|im_start|>")));
    assert_eq!(ids.last(), Some(&t.id("<|im_end|>")));
    let text = "Ünïcode ✓ and  spaces\n\tand 123";
    assert_eq!(
        tokenizer::decode(&tok, &tokenizer::encode(&tok, text).unwrap()).unwrap(),
        text
    );
    // The post-processor adds BOS; `encode` does not.
    assert!(tokenizer::post_processor_adds(&tok, Some(t.id("<|bos|>"))));
    assert!(!tokenizer::post_processor_adds(&tok, Some(t.id("<|eos|>"))));
}

/// GGUF metadata for a byte-level BPE vocabulary: bytes, then `extra` merges.
fn gpt2_gguf(pre: &str, extra_merges: &[(&str, &str)]) -> GgufFile {
    let mut tokens: Vec<String> = gpt2_byte_chars().iter().map(|c| c.to_string()).collect();
    let mut merges = Vec::new();
    for (a, b) in extra_merges {
        tokens.push(format!("{a}{b}"));
        merges.push(format!("{a} {b}"));
    }
    // A merge naming a token that is not in the vocabulary is dropped, not fatal.
    merges.push("zz qq".into());
    tokens.push("<|endoftext|>".into());
    let mut types = vec![1; tokens.len()];
    *types.last_mut().unwrap() = 3;
    let tr: Vec<&str> = tokens.iter().map(|s| s.as_str()).collect();
    let mr: Vec<&str> = merges.iter().map(|s| s.as_str()).collect();
    let mut w = GgufWriter::new();
    w.kv_str("tokenizer.ggml.model", "gpt2")
        .kv_str("tokenizer.ggml.pre", pre)
        .kv_str_array("tokenizer.ggml.tokens", &tr)
        .kv_i32_array("tokenizer.ggml.token_type", &types)
        .kv_str_array("tokenizer.ggml.merges", &mr)
        .kv_u32("tokenizer.ggml.eos_token_id", (tokens.len() - 1) as u32);
    let path = temp_dir("tok-gpt2").join("t.gguf");
    w.write(&path);
    GgufFile::open(&path).unwrap()
}

#[test]
fn gguf_gpt2_pre_tokenizers() {
    let merges = [("1", "2"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he")];
    let enc = |pre: &str, text: &str| {
        let g = gpt2_gguf(pre, &merges);
        let t = tokenizer::from_gguf(&g.metadata).unwrap();
        assert!(!t.add_bos, "BPE vocabularies default to no BOS");
        let ids = tokenizer::encode(&t.tokenizer, text).unwrap();
        assert_eq!(
            tokenizer::decode(&t.tokenizer, &ids).unwrap(),
            text,
            "{pre}"
        );
        pieces(&t.tokenizer, &ids)
    };
    // SmolLM splits digits one by one before byte-level BPE; GPT-2 keeps runs together.
    assert_eq!(enc("smollm", "12 the"), ["1", "2", "Ġthe"]);
    assert_eq!(enc("default", "12 the"), ["12", "Ġthe"]);
    assert_eq!(enc("unknown-pre", "12 the"), ["12", "Ġthe"]);
    // Llama-3 and Qwen2 regexes compile and round-trip awkward text.
    for pre in ["llama-bpe", "qwen2"] {
        let p = enc(pre, "I'LL see 12345 the\n\n  x!?\r\n");
        assert!(p.contains(&"Ġthe".to_string()), "{pre}: {p:?}");
    }
    // Control tokens are special added tokens.
    let g = gpt2_gguf("default", &merges);
    let t = tokenizer::from_gguf(&g.metadata).unwrap();
    let ids = tokenizer::encode(&t.tokenizer, "the<|endoftext|>").unwrap();
    assert_eq!(
        ids.last(),
        Some(&(t.tokenizer.get_vocab_size(true) as u32 - 1))
    );
    assert_eq!(t.eos, vec![t.tokenizer.get_vocab_size(true) as u32 - 1]);
}

#[test]
fn gguf_sentencepiece_tokenizer() {
    // <unk>, <s>, </s>, 256 byte pieces, then scored pieces.
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0f32; 3];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let scored = [
        ("▁t", -1.0),
        ("he", -2.0),
        ("▁the", -3.0),
        ("at", -4.0),
        ("▁c", -5.0),
        ("▁cat", -6.0),
        ("▁", -10.0),
        ("t", -11.0),
        ("h", -12.0),
        ("e", -13.0),
        ("c", -14.0),
        ("a", -15.0),
    ];
    for (p, s) in scored {
        tokens.push(p.into());
        types.push(1);
        scores.push(s);
    }
    let tr: Vec<&str> = tokens.iter().map(|s| s.as_str()).collect();
    let mut w = GgufWriter::new();
    w.kv_str("tokenizer.ggml.model", "llama")
        .kv_str_array("tokenizer.ggml.tokens", &tr)
        .kv_f32_array("tokenizer.ggml.scores", &scores)
        .kv_i32_array("tokenizer.ggml.token_type", &types)
        .kv_u32("tokenizer.ggml.bos_token_id", 1)
        .kv_u32("tokenizer.ggml.eos_token_id", 2);
    let path = temp_dir("tok-spm").join("t.gguf");
    w.write(&path);
    let g = GgufFile::open(&path).unwrap();
    let t = tokenizer::from_gguf(&g.metadata).unwrap();
    assert!(t.add_bos, "SentencePiece vocabularies default to BOS");
    assert_eq!((t.bos, t.eos.clone()), (Some(1), vec![2]));
    let tok = &t.tokenizer;
    // Merges follow the merged piece's score: ▁t, he, ▁the, at, ▁c, ▁cat.
    let ids = tokenizer::encode(tok, "the cat").unwrap();
    assert_eq!(pieces(tok, &ids), ["▁the", "▁cat"]);
    // Unknown characters fall back to their UTF-8 bytes and decode back.
    let ids = tokenizer::encode(tok, "the cat é").unwrap();
    assert_eq!(pieces(tok, &ids), ["▁the", "▁cat", "▁", "<0xC3>", "<0xA9>"]);
    assert_eq!(tokenizer::decode(tok, &ids).unwrap(), "the cat é");
    // <s> in text is the control token; the post-processor adds BOS.
    assert_eq!(tokenizer::encode(tok, "<s>").unwrap(), vec![1]);
    assert_eq!(tok.encode("the", true).unwrap().get_ids()[0], 1);
    assert!(tokenizer::post_processor_adds(tok, Some(1)));

    // Scores and tokens of different lengths are refused with the key named.
    let mut w = GgufWriter::new();
    w.kv_str("tokenizer.ggml.model", "llama")
        .kv_str_array("tokenizer.ggml.tokens", &tr)
        .kv_f32_array("tokenizer.ggml.scores", &[0.0]);
    w.write(&path);
    let g = GgufFile::open(&path).unwrap();
    let e = tokenizer::from_gguf(&g.metadata).err().unwrap().to_string();
    assert!(e.contains("tokenizer.ggml.scores has 1 entries"), "{e}");
}

#[test]
fn chat_templates_render_like_transformers() {
    let msgs = [
        ChatMessage::new("system", " Be brief. "),
        ChatMessage::new("user", "Hi"),
        ChatMessage::new("assistant", "Hello."),
    ];
    let out = render_chat_template(CHATML_TEMPLATE, &msgs, false, None, None).unwrap();
    assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n");
    // raise_exception surfaces as an error carrying the template's message.
    let e = render_chat_template(
        CHATML_TEMPLATE,
        &[ChatMessage::new("tool", "x")],
        true,
        None,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown role tool") && !e.contains('\n'), "{e}");

    // Block tags on their own lines leave no blank lines (trim_blocks, lstrip_blocks);
    // bos_token is available; Python methods work.
    let template = "{{ bos_token }}\n{% for m in messages %}\n    {% if m.content.startswith('x') %}\n[{{ m.role.upper() }}:{{ m.content.lstrip('x') }}]\n    {% endif %}\n{% endfor %}\n{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{{ {'b': 2}.get('c', 3) }}{% endfor %}";
    let out = render_chat_template(
        template,
        &[
            ChatMessage::new("user", "xxhi"),
            ChatMessage::new("user", "no"),
        ],
        false,
        Some("<s>"),
        None,
    )
    .unwrap();
    assert_eq!(out, "<s>\n[USER:hi]\na=13");

    // tokenizer_config.json forms: a list of named templates, AddedToken objects.
    let j = json!({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
                   "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "add_bos_token": false});
    let c = TokenizerConfig::from_json(&j, std::path::Path::new("tokenizer_config.json")).unwrap();
    assert_eq!(c.chat_template.as_deref(), Some("D"));
    assert_eq!(
        (
            c.bos_token.as_deref(),
            c.eos_token.as_deref(),
            c.add_bos_token
        ),
        (Some("<s>"), Some("</s>"), Some(false))
    );
    let e = TokenizerConfig::from_json(
        &json!({"chat_template": 5}),
        std::path::Path::new("tokenizer_config.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tokenizer_config.json: chat_template is a number"),
        "{e}"
    );
}
