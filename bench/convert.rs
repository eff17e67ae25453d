//! `cargo bench -p ordo --bench convert`: Markdown → canonical JSON conversion time of the
//! example documents, against the DESIGN §9 target (a typical document in < 5 ms).
//!
//! A conversion is what `ordo convert DOC.md` does after reading the file: parse the
//! document into a `JobSpec`, validate it and write the canonical JSON.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use ordo::formats::{self, LoadOptions};

const TARGET: Duration = Duration::from_millis(5);
const DOCS: &[&str] = &[
    "docs_sample_tasks_mixed_mode_task.md",
    "docs_tasks_004_task_execution_modes.md",
];

fn convert(label: &str, text: &str, opts: &LoadOptions) -> usize {
    let loaded = formats::parse(label, text, opts).expect("example parses");
    formats::check(&loaded, label).expect("example validates");
    formats::to_json(&loaded.spec).len()
}

fn main() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/examples/markdown"
    ));
    let opts = LoadOptions::default();
    let mut over = false;
    for doc in DOCS {
        let text = std::fs::read_to_string(dir.join(doc))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(doc).display()));
        // Warm up, then run for about half a second (at least 100 conversions).
        for _ in 0..20 {
            black_box(convert(doc, black_box(&text), &opts));
        }
        let start = Instant::now();
        let mut n = 0u32;
        while n < 100 || start.elapsed() < Duration::from_millis(500) {
            black_box(convert(doc, black_box(&text), &opts));
            n += 1;
        }
        let mean = start.elapsed() / n;
        let ratio = mean.as_secs_f64() / TARGET.as_secs_f64();
        over |= mean >= TARGET;
        println!(
            "convert {doc}: {:.3} ms (target < {} ms, {ratio:.3}x of target; {n} runs, {} bytes)",
            mean.as_secs_f64() * 1e3,
            TARGET.as_millis(),
            text.len()
        );
    }
    if over {
        println!("convert: OVER TARGET");
    }
}
