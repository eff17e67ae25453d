//! `cargo bench -p ordo --bench convert`: Markdown → canonical JSON conversion time of the
//! example documents (`tests/fixtures/markdown`, plus the shared conformance set's when
//! `../shared/examples` or `$ORDO_SHARED_EXAMPLES` exists), against the target in docs/design.md,
//! "Targets" (a typical document in < 5 ms).
//!
//! A conversion is what `ordo convert DOC.md` does after reading the file: parse the
//! document into a `JobSpec`, validate it and write the canonical JSON.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ordo_formats::{self as formats, LoadOptions};

const TARGET: Duration = Duration::from_millis(5);

fn convert(label: &str, text: &str, opts: &LoadOptions) -> usize {
    let loaded = formats::parse(label, text, opts).expect("example parses");
    formats::check(&loaded, label).expect("example validates");
    formats::to_json(&loaded.spec).len()
}

/// The Markdown documents in `dir`, sorted.
fn documents(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    out.sort();
    out
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = documents(&root.join("../tests/fixtures/markdown"));
    let shared = std::env::var_os("ORDO_SHARED_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../../shared/examples"));
    if shared.is_dir() {
        docs.extend(documents(&shared.join("markdown")));
    } else {
        println!(
            "convert: shared example set not found at {}: skipped",
            shared.display()
        );
    }
    let opts = LoadOptions::default();
    let mut over = false;
    for path in &docs {
        let doc = path.file_name().unwrap().to_string_lossy();
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Warm up, then run for about half a second (at least 100 conversions).
        for _ in 0..20 {
            black_box(convert(&doc, black_box(&text), &opts));
        }
        let start = Instant::now();
        let mut n = 0u32;
        while n < 100 || start.elapsed() < Duration::from_millis(500) {
            black_box(convert(&doc, black_box(&text), &opts));
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
