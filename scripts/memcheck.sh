#!/usr/bin/env bash
# The CLI, the C API and `uvit serve` under AddressSanitizer + UBSan with leak checking
# (docs/fuzzing.md, "Memory check of the commands"). Not in CI: it takes tens of minutes.
#
#   scripts/memcheck.sh [BUILD_DIR] [STEP...]
#
# BUILD_DIR (default build-memcheck) is configured if needed with UVIT_SANITIZE=ON,
# UVIT_NATIVE=OFF, no CUDA and no MPI, -O1 -g; only uvit, test_capi and capi_options are built.
# STEPs: `first` (a new user's commands: train, resume, every sample output, info, convert, bench,
# demo, bad input), `capi` (docs/c_api.md's two examples and tests/capi), `serve` (requests,
# good and bad, then SIGTERM), and any tests/e2e/NAME.sh by NAME. Default: first capi serve and
# the e2e scripts in E2E below. Every sanitizer report goes to BUILD_DIR/memcheck/ (also from
# commands that are meant to fail, and from a server in the background; MEMCHECK_LOG=DIR elsewhere,
# e.g. for two runs at once); the script fails if a step fails or that folder is not empty at the end.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
BD=${1:-build-memcheck}  # not B: lib.sh's serve_up sets B to the server's address
shift $(($# > 0 ? 1 : 0))
E2E=(cli_basics bad_inputs load_errors train_resume sample_cli convert_cli fid_cli latent_pipeline
  stvae_cli quantize_cli png_metadata dit_cli mdt_cli fit_cli diffit_cli lightningdit_cli svg_cli
  lavin_cli train_variants ux_audit)
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(first capi serve "${E2E[@]}")

if ! grep -q '^UVIT_SANITIZE:STRING=ON' "$BD/CMakeCache.txt" 2>/dev/null; then
  cmake -S . -B "$BD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DCMAKE_C_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g" \
    -DUVIT_SANITIZE=ON -DUVIT_NATIVE=OFF -DUVIT_CUDA=OFF -DUVIT_MPI=OFF >"$BD.cfg.log" 2>&1 ||
    { cat "$BD.cfg.log"; exit 1; }
fi
# A commit restamps the version and relinks uvit: MEMCHECK_BUILD=0 skips the build (a second
# run while one is running, which a relink would break with "Permission denied").
if [ "${MEMCHECK_BUILD:-1}" != 0 ]; then
  nice -n 5 cmake --build "$BD" --target uvit test_capi capi_options || exit 1
fi
BD=$(cd "$BD" && pwd)
UVIT=$BD/uvit PY=${PYTHON:-/usr/bin/python3}
if [ ! -d "$BD/fixtures" ]; then  # the PyTorch twin's fixtures, which some e2e scripts read
  "$PY" tests/reference/make_fixtures.py --out "$BD/fixtures" >/dev/null || exit 1
fi

LOG=${MEMCHECK_LOG:-$BD/memcheck}
rm -rf "$LOG" && mkdir -p "$LOG"
# Reports go to files (log_path) as well as failing the process: a command meant to fail, or a
# server in the background, would otherwise lose them. Leaks are checked at every exit;
# scripts/lsan.supp names third-party libraries only.
# detect_stack_use_after_return: a callback or thread (serve's jobs, the C API's preview and
# progress) that keeps a reference to a caller's local; the init-order checks: statics.
export ASAN_OPTIONS=detect_leaks=1:log_path=$LOG/asan:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$LOG/ubsan
export LSAN_OPTIONS=suppressions=$ROOT/scripts/lsan.supp:print_suppressions=0
export UVIT_CONFIG_DIR=$ROOT/configs PYTHON=$PY

tmp=$(mktemp -d)
source tests/e2e/data/lib.sh

step_first() {
  run "$UVIT" info --presets
  run "$UVIT" info --config fmnist_uvit_tiny
  run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/run" --steps 2 --batch 4 --no-grid -q \
    --set train.save_interval=1
  run "$UVIT" train --out "$tmp/run" --resume --steps 3 --no-grid -q
  local w=$tmp/run/nnet_ema.safetensors s=(--config "$tmp/run" --steps 2 --seed 1)
  run "$UVIT" sample "${s[@]}" -w "$w" --n 4 --classes all --out "$tmp/grid.png" --preview "$tmp/preview.png"
  run "$UVIT" sample "${s[@]}" -w "$w" --n 3 --classes 0,7 --cfg-scale 2 --dir "$tmp/pngs" \
    --npy "$tmp/s.npy" --npz "$tmp/s.npz"
  run "$UVIT" sample "${s[@]}" -w "$w" --n 2 --class sneaker --sampler ddim --batch 1 --out "$tmp/g2.png"
  run "$UVIT" info "$tmp/grid.png"
  run "$UVIT" info "$tmp/pngs/000000.png"
  run "$UVIT" info "$w"
  run "$UVIT" info "$tmp/s.npz"
  run "$UVIT" convert "$w" "$tmp/w.pth"
  run "$UVIT" convert "$tmp/w.pth" "$tmp/w2.safetensors" --dtype f16
  run "$UVIT" convert "$w" "$tmp/q.safetensors" --quantize int8
  run "$UVIT" sample --config "$tmp/run" -w "$tmp/q.safetensors" --steps 2 --n 2 --class 1 --out "$tmp/q.png"
  run "$UVIT" predict --help
  run "$UVIT" bench --config fmnist_uvit_tiny --mode forward --iters 1 --warmup 0 --batch 2
  run "$UVIT" bench --config fmnist_uvit_tiny --mode train --iters 1 --warmup 0 --batch 2
  run "$UVIT" bench --config fmnist_uvit_tiny --mode sample --n 2 --steps 2
  run "$UVIT" demo --out "$tmp/demo" --steps 2 --no-grid --set sample.sample_steps=2
  # Bad input: each one line and exit 1, with nothing for the sanitizers.
  head -c 1000 "$w" >"$tmp/cut.safetensors"
  head -c 300 "$tmp/s.npz" >"$tmp/cut.npz"
  "$PY" -c "
import json, struct, sys
h = json.dumps({'a': {'dtype': 'F32', 'shape': [1000000], 'data_offsets': [0, 4000000]}}).encode()
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + bytes(64))" "$tmp/lies.safetensors"
  head -c 4096 /dev/urandom >"$tmp/noise.pth"
  for bad in cut.safetensors lies.safetensors noise.pth; do
    "$UVIT" sample --config "$tmp/run" -w "$tmp/$bad" --n 1 --class 1 --out "$tmp/x.png" >/dev/null 2>"$tmp/err"
    [ $? -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && echo "ok: $(cat "$tmp/err")" || {
      fail "sample -w $bad"; cat "$tmp/err"; }
    "$UVIT" info "$tmp/$bad" >/dev/null 2>"$tmp/err"
    [ $? -eq 1 ] && echo "ok: $(cat "$tmp/err")" || { fail "info $bad"; cat "$tmp/err"; }
  done
  "$UVIT" info "$tmp/cut.npz" >/dev/null 2>"$tmp/err"
  [ $? -eq 1 ] && echo "ok: $(cat "$tmp/err")" || { fail "info cut.npz"; cat "$tmp/err"; }
  expect_error "no-such" "$UVIT" sample --config "$tmp/run" -w "$tmp/no-such.safetensors" --class 1 --out "$tmp/x.png"
  expect_error "sample_steps" "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/r2" --steps 1 \
    --set sample.sample_steps=-3
}

step_capi() {
  # docs/c_api.md's two examples, as written there, against the sanitized libuvit.so.
  awk '/^```c$/ { n++; f = sprintf("'"$tmp"'/doc%d.c", n); next } /^```$/ { f = "" } f { print > f }' \
    docs/c_api.md
  local cc=(cc -std=c99 -g -fsanitize=address,undefined -fno-omit-frame-pointer -I include
    -L "$BD" -Wl,-rpath,"$BD" -o)
  for i in 1 2; do
    "${cc[@]}" "$tmp/doc$i" "$tmp/doc$i.c" -luvit || fail "building docs/c_api.md example $i"
  done
  # Run from $tmp/c, where the examples find run/ (a 2-step demo sampled in 4 steps).
  mkdir -p "$tmp/c"
  run "$UVIT" demo --out "$tmp/c/run" --steps 2 --no-grid --set sample.sample_steps=4
  # Example 1 names the preset, whose 250 steps take minutes under ASan: a copy with 4 steps.
  mkdir -p "$tmp/presets"
  "$PY" -c "import json, sys; c = json.load(open(sys.argv[1])); c['sample']['sample_steps'] = 4
json.dump(c, open(sys.argv[2], 'w'))" configs/fmnist_uvit_tiny.json "$tmp/presets/fmnist_uvit_tiny.json"
  (cd "$tmp/c" && UVIT_CONFIG_DIR=$tmp/presets "$tmp/doc1" >"$tmp/doc1.out" 2>&1) || { fail "docs/c_api.md example 1"; cat "$tmp/doc1.out"; }
  [ "$(grep -c "Steps: " "$tmp/doc1.out")" = 4 ] || { fail "example 1: not 4 images"; cat "$tmp/doc1.out"; }
  (cd "$tmp/c" && "$tmp/doc2" 2>"$tmp/doc2.out") || { fail "docs/c_api.md example 2"; cat "$tmp/doc2.out"; }
  [ -f "$tmp/c/preview.ppm" ] || fail "example 2 wrote no preview.ppm"
  # A class name that is not one: the example's error path.
  sed 's/"sneaker"/"snaeker"/' "$tmp/doc1.c" >"$tmp/doc3.c"
  "${cc[@]}" "$tmp/doc3" "$tmp/doc3.c" -luvit || fail "building the bad-class example"
  (cd "$tmp/c" && UVIT_CONFIG_DIR=$tmp/presets "$tmp/doc3" 2>"$tmp/doc3.out") && fail "a bad class name succeeded"
  grep -q "snaeker" "$tmp/doc3.out" || { fail "bad class message"; cat "$tmp/doc3.out"; }
  bash tests/capi/capi_test.sh "$UVIT" "$BD/tests/test_capi" || fail "tests/capi/capi_test.sh"
  bash tests/capi/sampling_parity.sh "$UVIT" "$BD/tests/capi_options" >"$LOG-parity.log" 2>&1 ||
    { fail "tests/capi/sampling_parity.sh (log: $LOG-parity.log)"; tail -20 "$LOG-parity.log"; }
}

step_serve() {
  if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
    echo "SKIP serve: built without cpp-httplib"; return
  fi
  local tmp=$tmp/serve  # tiny_run's own run folder
  mkdir -p "$tmp"
  tiny_run
  serve_up --config fmnist_uvit_tiny --weights "$W" --queue 2 --max-images 4
  local p=(-s -o "$tmp/body" -w "%{http_code}" -m 300) id
  check() {  # check REGEX CURL-ARGS...: the status must match REGEX (2.. good, 4.. refused)
    local got; got=$(curl "${p[@]}" "${@:2}")
    [[ $got =~ ^$1$ ]] && echo "ok: $got ${*: -1}" || { fail "want $1, got $got: ${*:2}"; head -c 300 "$tmp/body"; echo; }
  }
  job_id() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$tmp/body"; }
  check 200 "$B/health"
  check 200 "$B/"
  check 200 "$B/uvit/v1/capabilities"
  check 200 "$B/uvit/v1/classes"
  check 200 -d '{"prompt": "sneaker", "steps": 2, "batch_size": 2, "seed": 3}' "$B/sdapi/v1/txt2img"
  check 200 -d '{"prompt": "bag", "n": 1, "steps": 2}' "$B/v1/images/generations"
  "$PY" - "$tmp/body" >"$tmp/png.json" <<'PYEOF'
import json, sys
print(json.dumps({"image": json.load(open(sys.argv[1]))["data"][0]["b64_json"]}))
PYEOF
  check 200 -d @"$tmp/png.json" "$B/sdapi/v1/png-info"
  check 202 -d '{"class": "coat", "n": 2, "steps": 2}' "$B/uvit/v1/jobs"
  id=$(job_id)
  check 200 -N "$B/uvit/v1/jobs/$id/events"
  check 200 "$B/uvit/v1/jobs/$id"
  check 200 "$B/sdapi/v1/progress?skip_current_image=false"
  # Bad requests: refused, and the server lives on.
  check '4..' -d '{"prompt": ' "$B/sdapi/v1/txt2img"
  check '4..' -d '{"prompt": "snaeker", "steps": 2}' "$B/sdapi/v1/txt2img"
  check '4..' -d '{"prompt": "bag", "steps": -1}' "$B/sdapi/v1/txt2img"
  check '4..' -d '{"prompt": "bag", "n": 1e12}' "$B/v1/images/generations"
  check '4..' -d '{"prompt": "bag", "batch_size": 100000}' "$B/sdapi/v1/txt2img"
  check '4..' -d '{"image": "not base64 at all"}' "$B/sdapi/v1/png-info"
  check '4..' -d '{"image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"}' "$B/sdapi/v1/png-info"
  head -c 20000 /dev/urandom >"$tmp/noise.bin"
  check '4..' -H 'Content-Type: application/json' --data-binary @"$tmp/noise.bin" "$B/sdapi/v1/txt2img"
  check '4..' "$B/uvit/v1/jobs/nope"
  check '4..' "$B/no/such/route"
  check '4..' -F x=1 "$B/sdapi/v1/txt2img"
  # An abandoned request, and a running job cancelled with its event stream abandoned.
  curl -s -m 0.3 -o /dev/null -d '{"prompt": "bag", "steps": 50, "batch_size": 4}' "$B/sdapi/v1/txt2img"
  check 202 -d '{"class": 1, "n": 4, "steps": 50}' "$B/uvit/v1/jobs"
  id=$(job_id)
  curl -s -m 0.5 -o /dev/null -N "$B/uvit/v1/jobs/$id/events"
  check '202|409' -X POST "$B/uvit/v1/jobs/$id/cancel"
  check 200 "$B/health"
  serve_down TERM
}

for s in "${STEPS[@]}"; do
  echo "=== $s"
  before=$fails start=$SECONDS
  case $s in
    first | capi | serve) "step_$s" ;;
    *)
      if [ ! -f "tests/e2e/$s.sh" ]; then fail "no step or tests/e2e/$s.sh: $s"; continue; fi
      bash "tests/e2e/$s.sh" "$UVIT" "$BD/fixtures" >"$LOG-$s.log" 2>&1 ||
        { fail "tests/e2e/$s.sh (log: $LOG-$s.log)"; tail -20 "$LOG-$s.log"; }
      ;;
  esac
  echo "=== $s: $((SECONDS - start)) s, $((fails - before)) failed"
done

reports=$(ls "$LOG")
if [ -n "$reports" ]; then
  for r in $reports; do echo "--- $LOG/$r"; head -40 "$LOG/$r"; done
  fail "sanitizer reports: $(echo $reports)"
fi
echo "memcheck: $fails failed (steps: ${STEPS[*]})"
exit $((fails > 0))
