//! Compiles a generated 10,000-stage pipeline and reports the median time and the peak memory.
//!
//! `cargo bench --bench compile` (targets on a 2-core machine: under 0.5 s, under 200 MB).
//! The pipeline is layered: each stage needs up to three stages of the layer before it and
//! reads an output of one of them in its command template, so the needs graph, the cycle check,
//! the ancestry check of template references and the critical path all do real work.
//! `benches/compile.sh` times the same file through the binary beside a Python YAML load.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use lightsout::compile::Factory;

const STAGES: usize = 10_000;
const WIDTH: usize = 100;
const RUNS: usize = 11;

/// The generated pipeline's text.
fn pipeline(stages: usize, width: usize) -> String {
    let mut s = String::from("version: 1\ncategory: misc\nstages:\n");
    for i in 0..stages {
        let layer = i / width;
        let _ = writeln!(s, "  s{i}:");
        if layer == 0 {
            let _ = writeln!(s, "    run: echo start {i}");
        } else {
            let base = (layer - 1) * width;
            let deps: Vec<usize> = (0..3).map(|k| base + (i + k * 7) % width).collect();
            let _ = writeln!(s, "    needs: [s{}, s{}, s{}]", deps[0], deps[1], deps[2]);
            let _ = writeln!(s, "    run: echo {{{{ stages.s{}.outputs.v }}}} {{{{ inputs.n }}}}", deps[0]);
        }
        let _ = writeln!(s, "    outputs: [v]");
        let _ = writeln!(s, "    timeout: {}s", 10 + i % 50);
    }
    s.push_str("inputs:\n  n: { type: string, default: x }\n");
    s
}

fn write_factory(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("pipelines"))?;
    std::fs::write(dir.join("pipelines/misc.yaml"), pipeline(STAGES, WIDTH))?;
    std::fs::write(
        dir.join("factory.yaml"),
        "version: 1\nname: bench\ndefaults: { image: bench/x }\ncategories:\n  misc: { pipeline: pipelines/misc.yaml }\n",
    )
}

/// Peak resident memory of this process so far, in bytes (Linux: `VmHWM`).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[expect(clippy::cast_precision_loss, reason = "megabytes for display")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    write_factory(dir.path())?;
    let size = std::fs::metadata(dir.path().join("pipelines/misc.yaml"))?.len();
    let before = peak_rss().unwrap_or(0);
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let factory = Factory::load(&dir.path().join("factory.yaml")).map_err(|ds| ds.render(&|_| None))?;
        let plan = factory.compile("misc", None).map_err(|ds| ds.render(&|_| None))?;
        times.push(start.elapsed());
        assert_eq!(plan.stages().len(), STAGES);
        std::hint::black_box(plan);
    }
    times.sort();
    // The share of loading (YAML parse, schema validation, typed read) in the total.
    let mut loads: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let p = lightsout::spec::load_file::<lightsout::spec::PipelineFile>(
                lightsout::spec::FileKind::Pipeline,
                &dir.path().join("pipelines/misc.yaml"),
            );
            std::hint::black_box(p.is_ok());
            start.elapsed()
        })
        .collect();
    loads.sort();
    let median = times[RUNS / 2];
    let peak = peak_rss().unwrap_or(0);
    println!("compile {STAGES} stages ({:.1} MB of YAML), {RUNS} runs", size as f64 / 1e6);
    println!("  median {:>8.1} ms   (target < 500 ms)", median.as_secs_f64() * 1e3);
    println!("  of which loading the file {:>8.1} ms (median)", loads[RUNS / 2].as_secs_f64() * 1e3);
    println!("  min    {:>8.1} ms", times[0].as_secs_f64() * 1e3);
    println!("  max    {:>8.1} ms", times[RUNS - 1].as_secs_f64() * 1e3);
    println!(
        "  peak RSS {:>6.1} MB   (target < 200 MB; {:.1} MB before compiling)",
        peak as f64 / 1e6,
        before as f64 / 1e6
    );
    Ok(())
}
