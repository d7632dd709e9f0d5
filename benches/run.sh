#!/usr/bin/env bash
# Run-engine benchmarks, by hand: benches/run.sh [a|b|c|d|e ...] (default: all five).
# Each compares lightsout with what a user would run instead, in the same run:
#   a  1,000 trivial stages on the local executor   vs  make -j2 on the equivalent Makefile
#   b  50 sequential container stages               vs  a shell loop of `docker run --rm`
#                                                       with the same image, flags and command
#   c  a wide DAG of sleep stages: makespan / critical path (target <= 1.05)
#   d  a stage printing 1 GB: the runner's peak memory (target: growth < 64 MB)
#   e  the cost of the egress fence: one stage fetching a page through the allow-list proxy
#      vs the same stage with no network, vs `docker run --rm` fetching it with an open network
# Needs hyperfine, make, bubblewrap, Docker and the test images (scripts/test-images).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/lightsout
image=lightsout-test/busybox:latest
which=("$@"); [ ${#which[@]} -eq 0 ] && which=(a b c d e)
export CI=true

# A git repository holding a factory whose `misc` pipeline is the given stages.
repo() { # repo <dir> <stages yaml>
  mkdir -p "$1/pipelines"
  printf 'version: 1\nname: bench\ndefaults: { image: "%s", timeout: 10m }\ncategories:\n  misc: { pipeline: pipelines/misc.yaml }\n' "$image" > "$1/factory.yaml"
  { printf 'version: 1\ncategory: misc\nstages:\n'; printf '%s' "$2"; } > "$1/pipelines/misc.yaml"
  printf -- '---\nid: B-1\ntitle: bench\n---\n' > "$1/t.md"
  git -C "$1" init -q && git -C "$1" add -A && git -C "$1" -c user.name=b -c user.email=b@b commit -qm base
}

tmp=$(mktemp -d)
net=lightsout-bench-egress-$$
cleanup() {
  docker rm -f "$net-server" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

for w in "${which[@]}"; do case $w in
a)
  echo "== (a) 1,000 trivial stages: lightsout --executor local vs make -j2"
  stages=""; mk=".PHONY: all"$'\n'"all:"
  for i in $(seq 0 999); do
    layer=$((i / 100))
    if [ $layer -eq 0 ]; then stages+="  s$i: { run: \"true\" }"$'\n'; dep=""
    else p=$(( (layer - 1) * 100 + (i * 7) % 100 )); stages+="  s$i: { run: \"true\", needs: [s$p] }"$'\n'; dep="s$p"; fi
    mk+=" s$i"; rules+="s$i: $dep"$'\n\t'"@true"$'\n'
  done
  repo "$tmp/a" "$stages"
  printf '%s\n.PHONY: %s\n%s' "$mk" "$(seq -f 's%.0f' 0 999 | tr '\n' ' ')" "$rules" > "$tmp/a/Makefile"
  hyperfine --warmup 1 --runs 5 \
    -n "lightsout run (1,000 stages, bubblewrap, -j2)" "cd $tmp/a && $bin run --ticket t.md --category misc --executor local -j 2 --format json > /dev/null" \
    -n "make -j2 (1,000 targets)" "make -s -j2 -C $tmp/a all"
  ;;
b)
  echo "== (b) 50 sequential container stages vs a docker run --rm loop"
  stages="  c0: { run: \"true\" }"$'\n'
  for i in $(seq 1 49); do stages+="  c$i: { run: \"true\", needs: [c$((i - 1))] }"$'\n'; done
  repo "$tmp/b" "$stages"
  flags="--network none --cap-drop ALL --security-opt no-new-privileges --read-only --tmpfs /tmp:rw,nosuid,nodev,size=512m,mode=1777 --memory 2g --memory-swap 2g --pids-limit 512 --init --user 65532:65532 -v $tmp/b:/workspace -w /workspace"
  hyperfine --warmup 1 --runs 5 \
    -n "lightsout run (50 container stages)" "cd $tmp/b && $bin run --ticket t.md --category misc --executor docker -j 2 --format json > /dev/null" \
    -n "shell loop of 50 docker run --rm" "for i in \$(seq 50); do docker run --rm $flags $image sh -c true; done"
  ;;
c)
  echo "== (c) wide DAG: 1 root, 16 parallel sleep 2 stages, 1 sink; makespan / critical path"
  stages="  root: { run: \"true\" }"$'\n'; sinkneeds=""
  for i in $(seq 1 16); do stages+="  w$i: { run: \"sleep 2\", needs: [root] }"$'\n'; sinkneeds+="w$i, "; done
  stages+="  sink: { run: \"true\", needs: [${sinkneeds%, }] }"$'\n'
  repo "$tmp/c" "$stages"
  for ex in local docker; do
    start=$(date +%s.%N)
    (cd "$tmp/c" && $bin run --ticket t.md --category misc --executor $ex -j 16 --format json > "$tmp/c.$ex.json")
    end=$(date +%s.%N)
    python3 - "$start" "$end" "$tmp/c.$ex.json" "$ex" <<'PY'
import json, sys
start, end, path, ex = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
ev = [json.loads(l) for l in open(path)]
# The critical path as the stages themselves took it: root, the longest sleep, sink.
d = {}
for e in ev:
    if e["event"] == "stage_finished":
        d[e["stage"]] = e["duration_ms"] / 1000
crit = d["root"] + max(v for k, v in d.items() if k.startswith("w")) + d["sink"]
first = min(e["at"] for e in ev if e["event"] == "stage_started")
last = max(e["at"] for e in ev if e["event"] == "stage_finished")
from datetime import datetime
span = (datetime.fromisoformat(last.replace("Z", "+00:00")) - datetime.fromisoformat(first.replace("Z", "+00:00"))).total_seconds()
print(f"  {ex:6} makespan {span:.2f}s (whole command {end - start:.2f}s), critical path {crit:.2f}s, ratio {span / crit:.3f} (target <= 1.05)")
PY
  done
  ;;
d)
  echo "== (d) a stage printing 1 GB: runner peak memory"
  repo "$tmp/d" "  loud: { run: \"yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c 1000000000\" }"$'\n'"  quiet: { run: \"true\" }"$'\n'
  for ex in local docker; do
    /usr/bin/time -f "%M" -o "$tmp/d.rss" sh -c "cd $tmp/d && $bin run --ticket t.md --category misc --executor $ex -j 1 --format json > /dev/null"
    base=$( /usr/bin/time -f "%M" sh -c "cd $tmp/d && $bin runs > /dev/null" 2>&1 | tail -n1 )
    echo "  $ex: peak RSS $(( $(cat "$tmp/d.rss") / 1024 )) MB with 1 GB of output (a listing command: $(( base / 1024 )) MB)"
  done
  ;;
e)
  echo "== (e) the egress fence: a fetch through the proxy vs no network vs docker run with a network"
  docker network create "$net" >/dev/null
  docker run -d --rm --name "$net-server" --network "$net" --network-alias server.bench $image \
    sh -c 'mkdir -p /tmp/www && echo hello > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www' >/dev/null
  printf 'version: 1\nnetwork: { allow: ["server.bench:80"] }\n' > "$tmp/policy.yaml"
  repo "$tmp/e" "  fetch: { run: \"wget -q -O- http://server.bench/\", network: { allow: [\"server.bench:80\"] } }"$'\n'
  cp "$tmp/policy.yaml" "$tmp/e/policy.yaml" && printf 'policy: policy.yaml\n' >> "$tmp/e/factory.yaml"
  git -C "$tmp/e" add -A && git -C "$tmp/e" -c user.name=b -c user.email=b@b commit -qm policy
  repo "$tmp/e0" "  fetch: { run: \"true\" }"$'\n'
  export LIGHTSOUT_EGRESS_NETWORK=$net
  (cd "$tmp/e" && $bin run --ticket t.md --category misc --executor docker --format json > /dev/null) # builds the proxy image once
  hyperfine --warmup 1 --runs 10 \
    -n "lightsout run, one stage fetching through the egress proxy" "cd $tmp/e && $bin run --ticket t.md --category misc --executor docker --format json > /dev/null" \
    -n "lightsout run, one stage with no network" "cd $tmp/e0 && $bin run --ticket t.md --category misc --executor docker --format json > /dev/null" \
    -n "docker run --rm fetching on an open network" "docker run --rm --network $net $image wget -q -O- http://server.bench/ > /dev/null"
  ;;
esac; done
