#!/usr/bin/env bash
# Times `lightsout validate` on a generated 10,000-stage pipeline beside what a user might run
# instead to merely read the same file: Python's PyYAML (`yaml.safe_load`), which checks nothing.
# Run by hand: benches/compile.sh (needs hyperfine and python3 with PyYAML).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/pipelines"
python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
width, n = 100, 10_000
out = ["version: 1", "category: misc", "stages:"]
for i in range(n):
    layer = i // width
    out.append(f"  s{i}:")
    if layer == 0:
        out.append(f"    run: echo start {i}")
    else:
        base = (layer - 1) * width
        deps = [base + (i + k * 7) % width for k in range(3)]
        out.append(f"    needs: [s{deps[0]}, s{deps[1]}, s{deps[2]}]")
        out.append(f"    run: echo {{{{ stages.s{deps[0]}.outputs.v }}}} {{{{ inputs.n }}}}")
    out.append("    outputs: [v]")
    out.append(f"    timeout: {10 + i % 50}s")
out.append("inputs:\n  n: { type: string, default: x }")
open(f"{d}/pipelines/misc.yaml", "w").write("\n".join(out) + "\n")
open(f"{d}/factory.yaml", "w").write(
    "version: 1\nname: bench\ndefaults: { image: bench/x }\n"
    "categories:\n  misc: { pipeline: pipelines/misc.yaml }\n")
PY
hyperfine --warmup 2 --runs 10 \
  -n "lightsout validate (parse, schema, compile)" "target/release/lightsout validate --factory $dir/factory.yaml" \
  -n "python3 yaml.safe_load (parse only)" "python3 -c 'import yaml,sys; yaml.safe_load(open(sys.argv[1]))' $dir/pipelines/misc.yaml"
