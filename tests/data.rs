//! The data side of fine-tuning: JSONL records, the prompt template, tokenization with
//! loss masks, padded and packed batches, the resumable order, generated tasks and
//! answer scoring.

mod common;

use std::collections::HashSet;

use boha::data::answer::{extract, is_correct, last_number, Answer, AnswerFormat, Scorer};
use boha::data::batch::{epoch_order, tokenize, tokenize_all, Batch, DataPosition, Example};
use boha::data::jsonl::{parse_line, read_jsonl, write_atomic, write_jsonl};
use boha::data::tasks::{generate, part_of, TaskKind, PARTS};
use boha::data::{
    alpaca_prompt, render, Layout, Loader, Record, TextCodec, TokenizeOptions, IGNORE,
};
use boha::loaders::{load_checkpoint, ChatMessage};
use boha::rng::Rng;
use common::tiny_checkpoint::{temp_dir, write_tiny_hf, TinySpec};

/// A toy codec: one id per character (code + 10), BOS 1, EOS 2, a simple chat format.
struct Chars;

impl TextCodec for Chars {
    fn encode(&self, text: &str) -> boha::Result<Vec<u32>> {
        Ok(text.chars().map(|c| c as u32 + 10).collect())
    }
    fn bos_for_raw_text(&self) -> Option<u32> {
        Some(1)
    }
    fn eos(&self) -> Option<u32> {
        Some(2)
    }
    fn render_chat(&self, m: &[ChatMessage], gen: bool) -> boha::Result<String> {
        let mut s: String = m
            .iter()
            .map(|m| format!("[{}]{}|", m.role, m.content))
            .collect();
        if gen {
            s.push_str("[assistant]");
        }
        Ok(s)
    }
}

fn decode_chars(ids: &[u32]) -> String {
    ids.iter()
        .map(|&i| char::from_u32(i - 10).unwrap())
        .collect()
}

#[test]
fn alpaca_template_is_llm_adapters_text() {
    // LLM-Adapters finetune.py generate_prompt, spelled out line by line.
    let ind = " ".repeat(16);
    let with_input = [
        "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request. ".to_string(),
        String::new(),
        format!("{ind}### Instruction:"),
        format!("{ind}Add the numbers."),
        ind.clone(),
        format!("{ind}### Input:"),
        format!("{ind}2 and 3"),
        ind.clone(),
        format!("{ind}### Response:"),
        format!("{ind}5"),
    ]
    .join("\n");
    assert_eq!(
        alpaca_prompt("Add the numbers.", "2 and 3", "5"),
        with_input
    );
    let without = [
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.  ".to_string(),
        String::new(),
        format!("{ind}### Instruction:"),
        format!("{ind}Say hi."),
        ind.clone(),
        format!("{ind}### Response:"),
        format!("{ind}hi"),
    ]
    .join("\n");
    assert_eq!(alpaca_prompt("Say hi.", "", "hi"), without);

    // The prompt is the template with an empty output; the response is the output.
    let s = parse_line(r#"{"instruction":"Say hi.","input":"","output":"hi"}"#).unwrap();
    let r = render(&Chars, &s.record).unwrap();
    assert_eq!(format!("{}{}", r.prompt, r.response), without);
    assert_eq!(r.response, "hi");
    assert!(r.prompt.ends_with(&format!("### Response:\n{ind}")));
}

#[test]
fn every_record_format_parses() {
    let a = parse_line(
        r#"{"instruction":"I","input":"X","output":"O","task":"boolq","answer":"true"}"#,
    )
    .unwrap();
    assert_eq!(
        a.record,
        Record::Alpaca {
            instruction: "I".into(),
            input: "X".into(),
            output: "O".into()
        }
    );
    assert_eq!(
        (a.task.as_deref(), a.answer.as_deref()),
        (Some("boolq"), Some("true"))
    );
    let b = parse_line(r#"{"instruction":"I","output":"O","answer":42}"#).unwrap();
    assert!(matches!(&b.record, Record::Alpaca { input, .. } if input.is_empty()));
    assert_eq!(b.answer.as_deref(), Some("42"));
    let c = parse_line(r#"{"prompt":"P ","completion":"C"}"#).unwrap();
    assert_eq!(
        c.record,
        Record::Completion {
            prompt: "P ".into(),
            completion: "C".into()
        }
    );
    assert_eq!(c.target_text(), "C");
    let d = parse_line(
        r#"{"messages":[{"role":"user","content":"U"},{"role":"assistant","content":"A"}]}"#,
    )
    .unwrap();
    let r = render(&Chars, &d.record).unwrap();
    assert_eq!(
        (r.prompt.as_str(), r.response.as_str(), r.raw),
        ("[user]U|[assistant]", "A|", false)
    );
}

#[test]
fn malformed_lines_name_file_and_line() {
    let dir = temp_dir("jsonl-bad");
    let cases = [
        (
            r#"{"instruction":"I","input":""}"#,
            r#"missing field "output""#,
        ),
        (r#"{"instruction":"I","output":"O""#, "invalid JSON"),
        (r#"[1,2]"#, "expected a JSON object"),
        (
            r#"{"prompt":"P","completion":3}"#,
            r#"field "completion" must be a string"#,
        ),
        (
            r#"{"messages":[{"role":"user","content":"U"}]}"#,
            "last message must be the assistant",
        ),
        (
            r#"{"messages":[{"role":"user"},{"role":"assistant","content":"A"}]}"#,
            r#"messages[0]: missing field "content""#,
        ),
        (r#"{"text":"T"}"#, "no known fields"),
    ];
    for (k, (bad, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("data{k}.jsonl"));
        let good = r#"{"prompt":"a","completion":"b"}"#;
        std::fs::write(&path, format!("{good}\n\n{good}\n{bad}\n{good}\n")).unwrap();
        let e = read_jsonl(&path).unwrap_err().to_string();
        let head = format!("{}:4: ", path.display());
        assert!(
            e.starts_with(&head) && e.contains(want),
            "{e} (want {head}{want})"
        );
    }
    let path = dir.join("ok.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\":\"a\",\"completion\":\"b\"}\n\n{\"instruction\":\"i\",\"output\":\"o\"}\n",
    )
    .unwrap();
    let s = read_jsonl(&path).unwrap();
    assert_eq!(s.iter().map(|s| s.line).collect::<Vec<_>>(), [1, 3]);
}

#[test]
fn masks_cover_the_response_only() {
    let s = parse_line(r#"{"prompt":"Q: 2+3? ","completion":"A: 5"}"#).unwrap();
    let opts = TokenizeOptions {
        max_len: 100,
        train_on_prompt: false,
    };
    let e = tokenize(&Chars, &s, &opts).unwrap();
    assert_eq!(e.ids[0], 1);
    assert_eq!(*e.ids.last().unwrap(), 2);
    assert_eq!(decode_chars(&e.ids[1..e.prompt_len]), "Q: 2+3? ");
    assert_eq!(decode_chars(&e.ids[e.prompt_len..e.ids.len() - 1]), "A: 5");
    for (i, &m) in e.loss.iter().enumerate() {
        assert_eq!(m, i >= e.prompt_len, "position {i}");
    }
    assert_eq!(e.loss_tokens(), "A: 5".len() + 1);

    let all = tokenize(
        &Chars,
        &s,
        &TokenizeOptions {
            train_on_prompt: true,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(all.ids, e.ids);
    assert!(all.loss.iter().all(|&m| m));

    let cut = tokenize(
        &Chars,
        &s,
        &TokenizeOptions {
            max_len: e.prompt_len + 2,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(cut.ids, e.ids[..e.prompt_len + 2]);
    assert_eq!(cut.loss_tokens(), 2);

    // A cut that leaves no response drops the record (and counts it).
    let t = tokenize_all(
        &Chars,
        &[s.clone(), s],
        &TokenizeOptions { max_len: 5, ..opts },
    )
    .unwrap();
    assert_eq!((t.examples.len(), t.dropped), (0, 2));
}

#[test]
fn chat_records_use_the_model_template() {
    let dir = temp_dir("data-chat");
    write_tiny_hf(&dir, &TinySpec::llama());
    let ck = load_checkpoint(&dir).unwrap();
    let s = parse_line(
        r#"{"messages":[{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":"Paris"}]}"#,
    )
    .unwrap();
    let r = render(&ck, &s.record).unwrap();
    assert!(
        r.prompt.ends_with(
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        ),
        "{}",
        r.prompt
    );
    assert_eq!(r.response, "Paris<|im_end|>\n");
    let e = tokenize(&ck, &s, &TokenizeOptions::default()).unwrap();
    assert_eq!(ck.decode(&e.ids[..e.prompt_len]).unwrap(), r.prompt);
    assert_eq!(ck.decode(&e.ids[e.prompt_len..]).unwrap(), r.response);
    assert!(
        e.loss[..e.prompt_len].iter().all(|&m| !m) && e.loss[e.prompt_len..].iter().all(|&m| m)
    );

    // Raw text gets the checkpoint's BOS and EOS.
    let a = parse_line(r#"{"instruction":"Say hi.","output":"hi"}"#).unwrap();
    let e = tokenize(&ck, &a, &TokenizeOptions::default()).unwrap();
    assert_eq!(e.ids[0], ck.bos_token.as_ref().unwrap().1);
    assert_eq!(*e.ids.last().unwrap(), ck.eos_tokens[0]);
    assert_eq!(
        ck.decode(&e.ids[e.prompt_len..e.ids.len() - 1]).unwrap(),
        "hi"
    );
}

fn random_examples(n: usize, seed: u64) -> Vec<Example> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let len = 2 + rng.below(9);
            let prompt_len = 1 + rng.below(len - 1);
            Example {
                ids: (0..len).map(|_| 3 + rng.below(50) as u32).collect(),
                loss: (0..len).map(|i| i >= prompt_len).collect(),
                prompt_len,
            }
        })
        .collect()
}

/// Checks a batch against the layout rules, given which examples sit where.
fn check_rows(b: &Batch, rows: &[Vec<&Example>], pad: u32) {
    for r in 0..b.rows {
        let mut at = 0;
        for e in rows.get(r).map(|v| v.as_slice()).unwrap_or(&[]) {
            for k in 0..e.len() {
                let t = r * b.len + at + k;
                assert_eq!(b.tokens[t], e.ids[k]);
                let want = if k + 1 < e.len() && e.loss[k + 1] {
                    e.ids[k + 1] as i32
                } else {
                    IGNORE
                };
                assert_eq!(b.targets[t], want, "row {r} col {}", at + k);
                assert_eq!(b.positions[t], k as u32);
                for j in 0..b.len {
                    assert_eq!(b.attends(r, at + k, j), j >= at && j <= at + k);
                }
            }
            at += e.len();
        }
        for c in at..b.len {
            let t = r * b.len + c;
            assert_eq!((b.tokens[t], b.targets[t]), (pad, IGNORE));
            assert!((0..b.len).all(|j| b.attends(r, c, j) == (j == c)));
        }
    }
    let want: usize = rows.iter().flatten().map(|e| e.loss_tokens()).sum();
    assert_eq!(b.loss_tokens(), want);
}

#[test]
fn padded_and_packed_layouts() {
    let ex = random_examples(7, 5);
    let refs: Vec<&Example> = ex[..3].iter().collect();
    let b = Batch::padded(&refs, 4, None, 0).unwrap();
    assert_eq!(
        (b.rows, b.len, b.examples),
        (4, refs.iter().map(|e| e.len()).max().unwrap(), 3)
    );
    let rows: Vec<Vec<&Example>> = refs.iter().map(|e| vec![*e]).collect();
    check_rows(&b, &rows, 0);
    assert!(Batch::padded(&refs, 2, None, 0).is_err());
    assert!(Batch::padded(&refs, 3, Some(1), 0).is_err());

    let rows = vec![
        vec![&ex[0], &ex[1]],
        vec![&ex[2]],
        vec![&ex[3], &ex[4], &ex[5]],
    ];
    let len = 40;
    let b = Batch::packed(&rows, 4, len, 7).unwrap();
    assert_eq!(b.examples, 6);
    check_rows(&b, &rows, 7);
}

#[test]
fn loader_visits_every_example_once_per_epoch() {
    let ex = random_examples(23, 9);
    for layout in [
        Layout::Padded {
            rows: 4,
            len: Some(12),
        },
        Layout::Packed {
            rows: 3,
            row_len: 15,
        },
    ] {
        let mut l = Loader::new(ex.clone(), 42, 0).unwrap();
        let mut seen = Vec::new();
        while l.position().epoch == 0 {
            let before = l.position().index;
            let b = l.next_batch(layout).unwrap();
            let order = epoch_order(ex.len(), 42, 0);
            let taken: Vec<&Example> = order[before..before + b.examples]
                .iter()
                .map(|&i| &ex[i])
                .collect();
            // Rebuild the expected row assignment: greedy for packing, one per row else.
            let rows: Vec<Vec<&Example>> = match layout {
                Layout::Padded { .. } => taken.iter().map(|e| vec![*e]).collect(),
                Layout::Packed { row_len, .. } => {
                    let mut rows: Vec<Vec<&Example>> = vec![vec![]];
                    let mut used = 0;
                    for e in &taken {
                        if used + e.len() > row_len {
                            rows.push(vec![]);
                            used = 0;
                        }
                        rows.last_mut().unwrap().push(*e);
                        used += e.len();
                    }
                    rows
                }
            };
            check_rows(&b, &rows, 0);
            seen.extend_from_slice(&order[before..before + b.examples]);
            if l.position().index == ex.len() {
                break;
            }
        }
        seen.sort();
        assert_eq!(seen, (0..ex.len()).collect::<Vec<_>>(), "{layout:?}");
    }
}

#[test]
fn loader_is_deterministic_and_resumes() {
    let ex = random_examples(11, 3);
    let layout = Layout::Packed {
        rows: 2,
        row_len: 13,
    };
    let run = |seed: u64, n: usize| {
        let mut l = Loader::new(ex.clone(), seed, 0).unwrap();
        (0..n)
            .map(|_| l.next_batch(layout).unwrap())
            .collect::<Vec<_>>()
    };
    let full = run(7, 12);
    assert_eq!(full, run(7, 12));
    assert_ne!(full, run(8, 12));
    assert_ne!(epoch_order(11, 7, 0), epoch_order(11, 7, 1));
    // Stop after 5 batches, save the position as JSON, resume in a fresh loader.
    let mut l = Loader::new(ex.clone(), 7, 0).unwrap();
    for _ in 0..5 {
        l.next_batch(layout).unwrap();
    }
    let saved = serde_json::to_string(&l.position()).unwrap();
    let pos: DataPosition = serde_json::from_str(&saved).unwrap();
    let mut r = Loader::new(ex.clone(), 7, 0).unwrap();
    r.seek(pos).unwrap();
    let rest: Vec<Batch> = (5..12).map(|_| r.next_batch(layout).unwrap()).collect();
    assert_eq!(rest, full[5..]);
    assert!(r.position().epoch >= 1, "the run should cross an epoch");
    assert!(r
        .seek(DataPosition {
            epoch: 0,
            index: 99
        })
        .is_err());
}

/// Checks every "x op y = z" in a worked solution.
fn check_equations(text: &str) {
    let words: Vec<&str> = text.split_whitespace().collect();
    let num = |w: &str| w.trim_end_matches(['.', ',']).parse::<i64>().ok();
    let mut n = 0;
    for w in words.windows(5) {
        if let (Some(x), Some(y), "=", Some(z)) = (num(w[0]), num(w[2]), w[3], num(w[4])) {
            let v = match w[1] {
                "+" => x + y,
                "-" => x - y,
                "*" => x * y,
                "/" => x / y,
                _ => continue,
            };
            assert_eq!(v, z, "{text}");
            n += 1;
        }
    }
    assert!(n >= 2, "a multi-step solution: {text}");
}

#[test]
fn generated_tasks_are_deterministic_disjoint_and_scorable() {
    for task in [TaskKind::Arith, TaskKind::Choice, TaskKind::Find] {
        let train = generate(task, 300, 1).unwrap();
        assert_eq!(train, generate(task, 300, 1).unwrap());
        let test = generate(task, 200, 2).unwrap();
        let keys: HashSet<&str> = train.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys.len(), train.len(), "items within a set are distinct");
        assert!(test.iter().all(|i| !keys.contains(i.key.as_str())));
        let prompts: HashSet<&str> = train.iter().map(|i| i.instruction.as_str()).collect();
        assert!(test
            .iter()
            .all(|i| !prompts.contains(i.instruction.as_str())));
        assert!(train.iter().all(|i| part_of(&i.key) == 1 % PARTS));
        let fmt = AnswerFormat::for_task(task.name()).unwrap();
        for item in train.iter().chain(&test) {
            assert!(is_correct(fmt, &item.output, &item.answer), "{item:?}");
            match task {
                TaskKind::Arith => {
                    assert!(item
                        .output
                        .ends_with(&format!("The answer is {}.", item.answer)));
                    check_equations(&item.output);
                }
                TaskKind::Choice => check_choice_rule(&item.instruction, &item.answer),
                TaskKind::Find => check_find_rule(&item.instruction, &item.answer),
            }
        }
        // The written records read back with their task and answer.
        let path = temp_dir("tasks").join("t.jsonl");
        let recs: Vec<_> = test.iter().map(|i| i.to_json(task)).collect();
        write_jsonl(&path, &recs).unwrap();
        let back = read_jsonl(&path).unwrap();
        assert_eq!(back.len(), test.len());
        assert_eq!(back[3].task.as_deref(), Some(task.name()));
        assert_eq!(back[3].answer.as_deref(), Some(test[3].answer.as_str()));
    }
    let templates: HashSet<String> = generate(TaskKind::Arith, 300, 4)
        .unwrap()
        .iter()
        .map(|i| i.key[..6].to_string())
        .collect();
    assert!(templates.len() >= 5, "{templates:?}");
}

/// Re-derives the find answer: the option holding the number the question names.
fn check_find_rule(instruction: &str, answer: &str) {
    let named: i64 = instruction
        .split("the number ")
        .nth(1)
        .and_then(|r| r.split('?').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number named: {instruction}"));
    // The options line: "17 is answer1, 42 is answer2, …".
    let line = instruction
        .lines()
        .find(|l| l.contains(" is answer1"))
        .unwrap_or_else(|| panic!("no options line: {instruction}"));
    let opts: Vec<i64> = line
        .split(", ")
        .enumerate()
        .map(|(i, p)| {
            let (v, label) = p.split_once(" is ").expect("N is answerK");
            assert_eq!(label, format!("answer{}", i + 1), "{instruction}");
            v.parse().expect("a number")
        })
        .collect();
    assert!((3..=5).contains(&opts.len()), "{instruction}");
    let k = opts
        .iter()
        .position(|&v| v == named)
        .expect("named option present")
        + 1;
    assert_eq!(answer, format!("answer{k}"), "{instruction}");
}

#[test]
fn compact_records_keep_the_question_and_the_answer() {
    let item = &generate(TaskKind::Find, 1, 3).unwrap()[0];
    let r = item.to_compact_json(TaskKind::Find);
    let prompt = r["prompt"].as_str().unwrap();
    assert!(
        prompt.starts_with("Which of these is the number "),
        "{prompt}"
    );
    assert!(prompt.contains("\nAnswer format: answer1/") && !prompt.contains("Please choose"));
    assert!(!prompt.contains("\n\n"));
    assert!(prompt.ends_with('\n'));
    // The completion repeats the named number's option, then its label.
    let named = prompt["Which of these is the number ".len()..]
        .split('?')
        .next()
        .unwrap();
    assert_eq!(r["completion"], format!("{named} is {}", item.answer));
    assert_eq!(r["answer"], item.answer.as_str());
    assert_eq!(r["task"], "find");
}

/// Re-derives the choice answer from the question text.
fn check_choice_rule(instruction: &str, answer: &str) {
    let largest = instruction.contains("the largest?");
    assert!(largest || instruction.contains("the smallest?"));
    let opts: Vec<i64> = instruction
        .split("Answer")
        .skip(1)
        .filter_map(|p| p.split_once(": ").and_then(|(_, v)| v.trim().parse().ok()))
        .collect();
    assert!((3..=5).contains(&opts.len()), "{instruction}");
    let best = if largest {
        opts.iter().max()
    } else {
        opts.iter().min()
    }
    .unwrap();
    let k = opts.iter().position(|v| v == best).unwrap() + 1;
    assert_eq!(answer, format!("answer{k}"));
    let fmt: Vec<String> = (1..=opts.len()).map(|i| format!("answer{i}")).collect();
    assert!(instruction.ends_with(&format!("Answer format: {}", fmt.join("/"))));
}

#[test]
fn answer_extraction_per_task_format() {
    let label = |task: &str, text: &str| match extract(AnswerFormat::for_task(task).unwrap(), text)
    {
        Some(Answer::Label(l)) => Some(l),
        _ => None,
    };
    assert_eq!(
        label("boolq", "the correct answer is false, not true"),
        Some("false")
    );
    assert_eq!(label("boolq", "True"), None);
    assert_eq!(
        label("piqa", "the correct answer is solution2"),
        Some("solution2")
    );
    for t in [
        "siqa",
        "social_i_qa",
        "ARC-Challenge",
        "arc",
        "obqa",
        "openbookqa",
        "choice",
    ] {
        assert_eq!(
            label(t, "answer4 seems right, not answer1"),
            Some("answer4"),
            "{t}"
        );
    }
    assert_eq!(label("hellaswag", "ending3"), Some("ending3"));
    assert_eq!(label("winogrande", "so option1 it is"), Some("option1"));
    assert_eq!(label("winogrande", "no option here"), None);

    assert_eq!(
        last_number("3 + 4 = 7. The answer is 1,234.5."),
        Some(1234.5)
    );
    assert_eq!(last_number("from 3 to -12"), Some(-12.0));
    assert_eq!(last_number("none"), None);
    let f = AnswerFormat::for_task("gsm8k").unwrap();
    assert!(is_correct(f, "so 12 - 5 = 7. The answer is 7.", "7"));
    assert!(is_correct(f, "The answer is 7.0004", "7"));
    assert!(!is_correct(f, "The answer is 7.01", "7"));
    assert!(!is_correct(f, "no idea", "7"));
    assert!(is_correct(
        AnswerFormat::for_task("piqa").unwrap(),
        "solution1",
        "solution1"
    ));
    assert!(!is_correct(
        AnswerFormat::for_task("piqa").unwrap(),
        "solution1",
        "solution2"
    ));
    assert!(AnswerFormat::for_task("unknown").is_err());
    // Without an `answer` field the gold answer comes from the record's output.
    let s = parse_line(r#"{"instruction":"I","output":"4 + 8 = 12. The answer is 12."}"#).unwrap();
    assert_eq!(s.gold(), "4 + 8 = 12. The answer is 12.");
    assert!(is_correct(f, "The answer is 12", s.gold()));
    assert!(!is_correct(f, "The answer is 8", s.gold()));
    let s = parse_line(
        r#"{"instruction":"I","output":"the correct answer is answer3","answer":"answer3"}"#,
    )
    .unwrap();
    let f = AnswerFormat::for_task("obqa").unwrap();
    assert!(is_correct(f, "answer3", s.gold()) && !is_correct(f, "answer2", s.gold()));
}

#[test]
fn accuracy_report_json() {
    let mut s = Scorer::new();
    assert!(s.add("boolq", "true", "true").unwrap());
    assert!(!s.add("boolq", "false", "true").unwrap());
    assert!(s.add("arith", "The answer is 4.", "4").unwrap());
    assert!(!s.add("boolq", "x", "true").unwrap());
    let v = serde_json::to_value(s.report()).unwrap();
    assert_eq!(v["n"], 4);
    assert!((v["accuracy"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(v["per_task"]["boolq"]["n"], 3);
    assert!((v["per_task"]["boolq"]["accuracy"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(v["per_task"]["arith"]["accuracy"], 1.0);
    assert_eq!(v.as_object().unwrap().len(), 3);
}

#[test]
fn atomic_writes_leave_nothing_on_failure() {
    let dir = temp_dir("atomic");
    let missing = dir.join("no-such-dir").join("out.jsonl");
    assert!(write_atomic(&missing, b"x").is_err());
    assert!(!missing.parent().unwrap().exists());
    // The target is a non-empty directory: the rename fails, the temporary is removed.
    let target = dir.join("taken.jsonl");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    assert!(write_atomic(&target, b"x").is_err());
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["taken.jsonl"]);
}

#[test]
fn data_command_writes_the_task() {
    let dir = temp_dir("data-cmd");
    let out = dir.join("choice.jsonl");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_boha"))
        .args([
            "data", "--task", "choice", "--n", "25", "--seed", "3", "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let recs = read_jsonl(&out).unwrap();
    let want = generate(TaskKind::Choice, 25, 3).unwrap();
    assert_eq!(recs.len(), 25);
    for (r, w) in recs.iter().zip(&want) {
        assert_eq!(r.target_text(), w.output);
        assert_eq!(r.answer.as_deref(), Some(w.answer.as_str()));
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(["data", "--task", "poems", "--n", "5", "--out"])
        .arg(dir.join("x.jsonl"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown task"));
    assert!(!dir.join("x.jsonl").exists());
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(["data", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("asks for the largest or the smallest"));

    // --format compact: prompt/completion records holding the bare answer.
    let compact = dir.join("arith.jsonl");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(["data", "--task", "arith", "--n", "6", "--seed", "2"])
        .args(["--format", "compact", "--out"])
        .arg(&compact)
        .status()
        .unwrap();
    assert!(st.success());
    let recs = read_jsonl(&compact).unwrap();
    let want = generate(TaskKind::Arith, 6, 2).unwrap();
    for (r, w) in recs.iter().zip(&want) {
        assert_eq!(r.target_text(), w.answer);
        assert_eq!(r.answer.as_deref(), Some(w.answer.as_str()));
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_boha"))
        .args([
            "data", "--task", "arith", "--n", "2", "--format", "xml", "--out",
        ])
        .arg(dir.join("y.jsonl"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown --format"));
    assert!(!dir.join("y.jsonl").exists());
}
