#!/usr/bin/env bash
# Seeds the fuzz corpus with every pipeline, example and malformed case of the project; the
# first byte of an input picks the file kind (0 factory, 1 policy, 2 pipeline).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p fuzz/corpus/load_and_compile
i=0
for f in pipelines/*.yaml tests/malformed/*.yaml tests/fixtures/pipelines/*.yaml examples/*/pipelines/*.yaml; do
  { printf '\x02'; cat "$f"; } > "fuzz/corpus/load_and_compile/p$i"; i=$((i + 1))
done
for f in tests/fixtures/factory.yaml examples/*/factory.yaml; do
  { printf '\x00'; cat "$f"; } > "fuzz/corpus/load_and_compile/f$i"; i=$((i + 1))
done
for f in tests/fixtures/policy.yaml examples/*/policy.yaml; do
  { printf '\x01'; cat "$f"; } > "fuzz/corpus/load_and_compile/o$i"; i=$((i + 1))
done
echo "seeded $i inputs"
