//! Tokenizer and chat template: the first byte picks the mode.
//! Mode even: the rest is a tokenizer.json, loaded and used to encode and decode a text.
//! Mode odd: the rest is a chat template (Jinja), rendered with boha's renderer over a
//! short conversation.
#![no_main]

use boha::loaders::tokenizer::{
    decode, encode, from_bytes, post_processor_adds, render_chat_template,
};
use boha::loaders::ChatMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // libFuzzer's hook aborts on every panic; panics boha catches are not crashes.
    boha::panic_guard::install_quiet_hook();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(tok) = from_bytes(rest) {
            let _ = post_processor_adds(&tok, Some(0));
            if let Ok(ids) = encode(&tok, "What is the capital of France? <|im_end|> é\u{0}") {
                let _ = decode(&tok, &ids);
            }
            let _ = decode(&tok, &[0, 1, 2, 3, u32::MAX]);
        }
    } else if let Ok(template) = std::str::from_utf8(rest) {
        let messages = [
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: " What is 2+2? ".into(),
            },
            ChatMessage {
                role: "assistant".into(),
                content: "4".into(),
            },
        ];
        let _ = render_chat_template(
            template,
            &messages,
            mode & 2 != 0,
            Some("<s>"),
            Some("</s>"),
        );
    }
});
