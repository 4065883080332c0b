#!/usr/bin/env bash
# Running out of memory is one line, not the OOM killer (docs/memory.md): a --batch whose buffers
# exceed the memory the process can have (UVIT_TEST_MEM_LIMIT in place of the machine's) is
# refused up front, before any initialisation, step or sample, naming both sizes and the option;
# a run that fits a generous limit still works. The need named is the whole need: the same run
# under a limit 0.1 MiB above it goes through, so nothing is allocated after the check.
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") FIX=${2:-} PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

small=$((256 << 20)) big=$((4 << 30))
need="the buffers need [0-9.]* [MG]iB, this machine has 256.0 MiB (UVIT_TEST_MEM_LIMIT)"
# A training run's need names its model's part, which no batch size changes (docs/memory.md).
model="the model's parameters, gradient, AdamW moments and EMA, whatever the batch"
train_need="the buffers need [0-9.]* [MG]iB ([0-9.]* MiB of them $model), this machine has 256.0 MiB (UVIT_TEST_MEM_LIMIT)"

UVIT_TEST_MEM_LIMIT=$big run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/run" --steps 1 \
  --batch 2 --no-grid -q
W=$tmp/run/nnet_ema.safetensors
[ -s "$W" ] || fail "train under a 4 GiB limit wrote no weights"
UVIT_TEST_MEM_LIMIT=$big run "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 4 \
  --steps 2 --out "$tmp/ok.png" -q
[ -s "$tmp/ok.png" ] || fail "sample under a 4 GiB limit wrote no image"

UVIT_TEST_MEM_LIMIT=$small expect_error \
  "^uvit: error: out of memory: $train_need; with --batch 4096: give smaller values$" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/big" --steps 1 --batch 4096 --no-grid -q
ls "$tmp"/big/*.safetensors >/dev/null 2>&1 && fail "a refused train wrote a checkpoint"
grep -qs '"loss"' "$tmp/big/log.jsonl" && fail "a refused train logged a step"

UVIT_TEST_MEM_LIMIT=$small expect_error \
  "^uvit: error: out of memory: $need; with --batch 4096 --n 4096: give smaller values$" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 4096 --batch 4096 --steps 2 \
  --out "$tmp/big.png" -q
[ ! -e "$tmp/big.png" ] || fail "a refused sample wrote an image"

# The whole need, up front: refused under 16 MiB naming N MiB; under N + 0.1 MiB the run goes
# through, under N - 0.2 MiB it is refused again (the message rounds to 0.1 MiB, and a buffer not
# allocated is counted without the allocator's few bytes of slack). A check made buffer by buffer
# (before the plan) names only "at least" the buffers allocated so far.
whole_need() {  # whole_need NAME CMD... (a train's --out is $tmp/whole, emptied before each run)
  local name=$1; shift
  rm -rf "$tmp/whole"
  UVIT_TEST_MEM_LIMIT=$((16 << 20)) "$@" >"$tmp/out" 2>"$tmp/err"
  local n; n=$(sed -n 's/^uvit: error: out of memory: the buffers need \([0-9.]*\) MiB\( ([^)]*)\)\?, this machine has 16.0 MiB (UVIT_TEST_MEM_LIMIT); .*$/\1/p' "$tmp/err")
  if [ -z "$n" ]; then
    fail "$name under 16 MiB: want the whole need in MiB, got: $(cat "$tmp/err")"
    return
  fi
  rm -rf "$tmp/whole"
  UVIT_TEST_MEM_LIMIT=$("$PY" -c "print(int(($n + 0.1) * 2**20))") "$@" >"$tmp/out" 2>"$tmp/err" ||
    fail "$name under $n + 0.1 MiB (the need it named): $(cat "$tmp/err")"
  rm -rf "$tmp/whole"
  UVIT_TEST_MEM_LIMIT=$("$PY" -c "print(int(($n - 0.2) * 2**20))") "$@" >"$tmp/out" 2>"$tmp/err" &&
    fail "$name under $n - 0.2 MiB ran"
  grep -q "out of memory: the buffers need [0-9.]* MiB" "$tmp/err" ||
    fail "$name under $n - 0.2 MiB: $(cat "$tmp/err")"
  echo "ok: $name needs $n MiB, named up front"
}
whole_need "train fmnist_uvit_tiny --batch 64" "$UVIT" train --config fmnist_uvit_tiny \
  --out "$tmp/whole" --steps 2 --batch 64 --no-grid -q
# The sample grids a run draws from its EMA network are part of its plan: refused before step 1.
whole_need "train fmnist_uvit_tiny --batch 64 with its grids" "$UVIT" train \
  --config fmnist_uvit_tiny --out "$tmp/whole" --steps 2 --batch 64 --grid-every 1 -q
whole_need "train fmnist_dit_tiny --batch 16" "$UVIT" train --config fmnist_dit_tiny \
  --out "$tmp/whole" --steps 2 --batch 16 --no-grid -q
whole_need "sample --batch 64" "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 \
  --n 64 --batch 64 --steps 2 --out "$tmp/whole.png" -q
"$UVIT" train --config fmnist_skip_dit_tiny --out "$tmp/skip" --steps 1 --batch 2 --no-grid -q >/dev/null ||
  fail "train fmnist_skip_dit_tiny"
whole_need "sample --skip-cache 2" "$UVIT" sample --config fmnist_skip_dit_tiny \
  --weights "$tmp/skip/nnet_ema.safetensors" --class 1 --n 64 --batch 64 --steps 4 --skip-cache 2 \
  --out "$tmp/whole.png" -q
whole_need "bench --mode train" "$UVIT" bench --config fmnist_dit_tiny --mode train --batch 16 \
  --iters 1 --warmup 0
whole_need "bench --mode sample" "$UVIT" bench --config fmnist_uvit_tiny --mode sample --batch 64 \
  --n 64 --steps 2 -q

# FiT's packed batches (docs/fit.md): the largest packed batch is planned, online RoPE included.
mixed_npy_folder "$tmp/lat"
fit=(train --config fmnist_fit_tiny --set dataset.name=npy_folder --set "dataset.path=$tmp/lat"
  --out "$tmp/whole" --steps 3 --batch 8 --no-grid -q)
whole_need "train fmnist_fit_tiny, packed" "$UVIT" "${fit[@]}"
whole_need "train fmnist_fit_tiny, packed, online RoPE" "$UVIT" "${fit[@]}" \
  --set nnet.ori_max_pe_len=7 --set nnet.custom_freqs=ntk-aware --set nnet.online_rope=true

# A model whose state alone is above the limit: no batch size helps, and none is named.
UVIT_TEST_MEM_LIMIT=$((8 << 30)) expect_error \
  "^uvit: error: out of memory: the buffers need 13.2 GiB (12.6 GiB of them $model), this machine has 8.0 GiB (UVIT_TEST_MEM_LIMIT); the model alone does not fit: no batch size helps, it needs more memory$" \
  "$UVIT" bench --config dit_xl_2 --mode train --batch 1 --iters 1 --warmup 0
UVIT_TEST_MEM_LIMIT=$((1 << 30)) expect_error \
  "^uvit: error: out of memory: the buffers need 2.5 GiB (2.5 GiB of them the model's parameters, whatever the batch), this machine has 1.0 GiB (UVIT_TEST_MEM_LIMIT); the model alone does not fit: no batch size helps, it needs more memory$" \
  "$UVIT" bench --config dit_xl_2 --mode forward --batch 1 --iters 1 --warmup 0
# Ranks sharing the node (as the launcher says): fewer of them would hold it.
OMPI_COMM_WORLD_LOCAL_SIZE=2 UVIT_TEST_MEM_LIMIT=$((20 << 30)) expect_error \
  "^uvit: error: out of memory: the buffers need 13.2 GiB (12.6 GiB of them $model), each of the 2 ranks on this machine has 10.0 GiB (20.0 GiB, UVIT_TEST_MEM_LIMIT, shared); the model alone does not fit one rank's share: run fewer ranks on this machine$" \
  "$UVIT" bench --config dit_xl_2 --mode train --batch 1 --iters 1 --warmup 0
# The batch does matter here: the option is named.
UVIT_TEST_MEM_LIMIT=$((20 << 30)) expect_error \
  "^uvit: error: out of memory: the buffers need 53.1 GiB (12.6 GiB of them $model), this machine has 20.0 GiB (UVIT_TEST_MEM_LIMIT); with --batch 64: give smaller values$" \
  "$UVIT" bench --config dit_xl_2 --mode train --batch 64 --iters 1 --warmup 0

# uvit demo has no batch option: the hint names the setting (nothing is written before it).
UVIT_TEST_MEM_LIMIT=$((64 << 20)) expect_error \
  "^uvit: error: out of memory: the buffers need [0-9.]* MiB ([0-9.]* MiB of them $model), this machine has 64.0 MiB (UVIT_TEST_MEM_LIMIT); with train.batch_size 64: give a smaller one (--set train.batch_size=N)$" \
  "$UVIT" demo --out "$tmp/demo" --steps 1 -q
[ ! -e "$tmp/demo" ] || fail "a refused demo left $tmp/demo"

# A run whose grid cannot fit stops before its first step, not after it (no run folder).
UVIT_TEST_MEM_LIMIT=$((260 << 20)) expect_error \
  "out of memory: the buffers need [0-9.]* MiB ([0-9.]* MiB of them $model), this machine has 260.0 MiB (UVIT_TEST_MEM_LIMIT); with --batch 64" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/grid" --steps 2 --batch 64 -q
[ ! -e "$tmp/grid" ] || fail "a train refused for its grid left $tmp/grid"

# Host memory: the samples `uvit sample` and `uvit eval` hold for a huge --n are refused up front,
# naming the bytes, before any sampling (timeout: unchecked, the sampling would run for hours).
UVIT_TEST_MEM_LIMIT=$((1 << 30)) expect_error \
  "^uvit: error: out of memory: the buffers need 7.4 GiB, this machine has 1.0 GiB (UVIT_TEST_MEM_LIMIT); with --n 2000000: give smaller values$" \
  timeout 120 "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 2000000 --steps 1 \
  --out "$tmp/huge.png" -q
# A huge --n is refused before any vector of --n entries exists (sample's labels and prompts, the
# pipeline's): the same message at the process's start-up RSS. Before, 100M labels were built three
# times (1.5 GB, seconds) before the check. Peak RSS from getrusage, not timing.
UVIT_TEST_MEM_LIMIT=$((1 << 30)) "$PY" - "$UVIT" "$W" "$tmp" <<'PYEOF' || fail "sample --n 100000000"
import resource, subprocess, sys
uvit, w, tmp = sys.argv[1:]
p = subprocess.run([uvit, "sample", "--config", "fmnist_uvit_tiny", "--weights", w, "--class", "1",
                    "--n", "100000000", "--out", tmp + "/huge.png", "-q"],
                   capture_output=True, text=True, timeout=600)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # MiB
want = ("uvit: error: out of memory: the buffers need 365.2 GiB, this machine has 1.0 GiB "
        "(UVIT_TEST_MEM_LIMIT); with --n 100000000: give smaller values\n")
assert p.returncode == 1 and p.stderr == want, (p.returncode, p.stderr)
assert peak < 800, "peak RSS %.0f MiB: vectors of --n entries were built before the refusal" % peak
print("ok: sample --n 100000000 refused at a peak RSS of %.0f MiB" % peak)
PYEOF
if [ -f "$FIX/fid/inception.pth" ]; then
  UVIT_TEST_MEM_LIMIT=$((1 << 30)) expect_error \
    "^uvit: error: out of memory: the buffers need 2.2 GiB, this machine has 1.0 GiB (UVIT_TEST_MEM_LIMIT); with --n 100000: give smaller values$" \
    timeout 120 "$UVIT" eval --config fmnist_uvit_tiny --weights "$W" --n 100000 --steps 1 \
    --ref "$FIX/fid/feats_stats.npz" --metrics fid --inception "$FIX/fid/inception.pth" \
    --out "$tmp/ev.npz" -q
  [ ! -e "$tmp/ev.npz.parts" ] || fail "a refused eval left its work folder"
else
  echo "skip: eval check (no fixtures/fid/inception.pth)"
fi

# serve: a job whose batch cannot fit fails naming the need and what to change; the server goes on
# serving the next one.
if ! "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  serve_up UVIT_TEST_MEM_LIMIT=$small --config fmnist_uvit_tiny --weights "$W" \
    --set sample.mini_batch_size=4096 --max-images 4096 -q
  "$PY" - "$B" <<'PYEOF' || fail "serve under 256 MiB: $(cat "$tmp/server.log")"
import json, sys, time, urllib.request
url = sys.argv[1]
def job(n):
    req = urllib.request.Request(url + "/uvit/v1/jobs", json.dumps({"n": n, "class": 1, "steps": 2}).encode(),
                                 {"Content-Type": "application/json"})
    poll = url + json.load(urllib.request.urlopen(req))["poll_url"]
    for _ in range(1200):
        j = json.load(urllib.request.urlopen(poll))
        if j["status"] in ("completed", "failed", "cancelled"):
            return j
        time.sleep(0.1)
    raise SystemExit("job %s did not end" % poll)
big = job(4096)
msg = big.get("error", {}).get("message", "")
want = ("out of memory: the buffers need ", "this machine has 256.0 MiB (UVIT_TEST_MEM_LIMIT); ask for fewer images, "
        "or start the server with a smaller network batch (--set sample.mini_batch_size=N)")
assert big["status"] == "failed" and msg.startswith(want[0]) and msg.endswith(want[1]), big
small = job(2)
assert small["status"] == "completed" and small["progress"]["images"] == 2, small
print("ok: serve: " + msg)
PYEOF
  serve_down
  # The A1111 and OpenAI routes answer a request too big for the memory with 422 and the job's
  # message (docs/serve.md), not 500, and serve the next one. OpenAI's n=10 needs more than 16 MiB,
  # n=1 less; A1111 runs one image at a time, so its refusal needs a limit that holds the network
  # (its need, read from `uvit sample`'s refusal under 4 MiB) but not one image's sampling.
  net=$(UVIT_TEST_MEM_LIMIT=$((4 << 20)) "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" \
    --class 1 --n 1 --steps 2 --out "$tmp/one.png" -q 2>&1 | sed -n 's/.*the buffers need \([0-9.]*\) MiB.*/\1/p')
  serve_up UVIT_TEST_MEM_LIMIT=$((16 << 20)) --config fmnist_uvit_tiny --weights "$W" -q
  url1=$B pid1=$pid
  serve_log=$tmp/server2.log serve_up UVIT_TEST_MEM_LIMIT="$("$PY" -c "print(int((${net:-0} + 0.2) * 2**20))")" \
    --config fmnist_uvit_tiny --weights "$W" -q
  url2=$B pid2=$pid
  # Host memory that runs out beyond the memory check (a std::bad_alloc: memory other processes
  # hold, or the check does not count) is the server's condition: 503 naming it, not 500, and the
  # server serves the next request. Injected into a third server with an operator-new shim that
  # fails the allocations of exactly 10 samples' floats (10 x 784 x 4 bytes: the sampler's first
  # vector for n 10).
  url3=- pid3=
  cat >"$tmp/new_fails.cpp" <<'CPPEOF'
#include <cstdlib>
#include <new>
static const std::size_t fails = [] {
  const char* v = std::getenv("UVIT_TEST_NEW_FAILS");
  return v ? std::size_t(std::strtoull(v, nullptr, 10)) : 0;
}();
void* operator new(std::size_t n) {
  if (fails && n == fails) throw std::bad_alloc();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
CPPEOF
  if command -v "${CXX:-c++}" >/dev/null &&
    "${CXX:-c++}" -shared -fPIC -O1 -o "$tmp/new_fails.so" "$tmp/new_fails.cpp"; then
    serve_log=$tmp/server3.log serve_up LD_PRELOAD="$tmp/new_fails.so" \
      UVIT_TEST_NEW_FAILS=$((10 * 784 * 4)) --config fmnist_uvit_tiny --weights "$W" -q
    url3=$B pid3=$pid
  else
    echo "skip: serve's bad_alloc check (no C++ compiler for the operator-new shim)"
  fi
  "$PY" - "$url1" "$url2" "$url3" <<'PYEOF' ||
import json, sys, time, urllib.error, urllib.request
def post(url, path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        r = urllib.request.urlopen(req)
        return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
urls = [u for u in sys.argv[1:] if u != "-"]
hint = "; ask for fewer images, or start the server with a smaller network batch (--set sample.mini_batch_size=N)"
oa = "/v1/images/generations"
st, r = post(sys.argv[1], oa, {"prompt": "bag", "n": 10, "steps": 2})
m = r["error"]["message"]
assert st == 422 and r["error"]["type"] == "invalid_request_error" and m.startswith(
    "out of memory: the buffers need ") and m.endswith(hint), (st, r)
st, r = post(sys.argv[1], oa, {"prompt": "bag", "n": 1, "steps": 2})
assert st == 200 and len(r["data"]) == 1, (st, str(r)[:300])
print("ok: serve OpenAI n=10: 422 " + m)
a1 = "/sdapi/v1/txt2img"
# A1111 requests draw one image per part, so fewer images cannot help; the hint names what can:
# no guidance (cfg_scale 1) halves the network's batch, and here that fits (docs/serve.md).
guided = ("; one image alone does not fit (A1111 requests make their images one at a time, "
          "whatever batch_size and n_iter): with guidance off (w 1: A1111's cfg_scale, OpenAI's "
          "guidance_scale, guidance_w) the network runs on one sample instead of two; else the "
          "server needs more memory")
for _ in range(2):  # and again: the server goes on answering
    st, r = post(sys.argv[2], a1, {"prompt": "bag", "steps": 2, "batch_size": 2, "cfg_scale": 4})
    assert st == 422 and r["error"] == "BadRequest" and r["detail"].startswith(
        "out of memory: the buffers need ") and r["detail"].endswith(guided), (st, r)
st, r1 = post(sys.argv[2], a1, {"prompt": "bag", "steps": 2, "batch_size": 2, "cfg_scale": 1})
assert st == 200 and len(r1["images"]) == 2, (st, str(r1)[:300])
opts = json.load(urllib.request.urlopen(sys.argv[2] + "/sdapi/v1/options"))
assert "sd_model_checkpoint" in opts, opts
print("ok: serve A1111: 422 " + r["detail"] + "; with cfg_scale 1: 200")
if len(urls) == 3:  # the operator-new shim's server: 503, a failed job, then the next served
    want = ("out of memory: the server could not allocate host memory for this request (memory "
            "that other processes hold, or that the memory check does not count); it goes on "
            "serving: try again later, or ask for less")
    st, r = post(urls[2], oa, {"prompt": "bag", "n": 10, "steps": 2})
    if st == 200:  # the binary's own operator new came first (a sanitizer's allocator)
        print("skip: serve's bad_alloc check (the operator-new shim did not take)")
        sys.exit(0)
    assert st == 503 and r["error"]["message"] == want and r["error"]["type"] == "server_error", (st, r)
    st, r = post(urls[2], oa, {"prompt": "bag", "n": 2, "steps": 2})
    assert st == 200 and len(r["data"]) == 2, (st, str(r)[:300])
    for n, end in ((10, "failed"), (2, "completed")):
        st, r = post(urls[2], "/uvit/v1/jobs", {"class": 1, "n": n, "steps": 2})
        for _ in range(600):
            j = json.load(urllib.request.urlopen(urls[2] + r["poll_url"]))
            if j["status"] not in ("queued", "generating"):
                break
            time.sleep(0.1)
        assert j["status"] == end and (n == 2 or j["error"]["message"] == want), j
    print("ok: serve: host memory exhausted: 503 and a failed job, then the next served: " + want)
PYEOF
    fail "serve's memory refusals: $(cat "$tmp"/server*.log)"
  for pid in "$pid1" "$pid2" $pid3; do serve_down; done
else
  echo "skip: serve check (built without cpp-httplib)"
fi

# The C API: UVIT_ERR_OUT_OF_MEMORY with the need and the fields to change; the context serves the
# next request (tests/e2e/data/oom_capi.c, against the build's libuvit).
lib=$(dirname "$UVIT")
if [ -e "$lib/libuvit.so" ] && command -v cc >/dev/null; then
  cc -std=c99 -Wall -Wextra -pedantic -I include tests/e2e/data/oom_capi.c -L"$lib" -luvit \
    -Wl,-rpath,"$lib" -o "$tmp/oom_capi" || fail "compiling tests/e2e/data/oom_capi.c"
  if UVIT_TEST_MEM_LIMIT=$small "$tmp/oom_capi" fmnist_uvit_tiny "$W" 4096 >"$tmp/out" 2>"$tmp/err"; then
    echo "ok: C API: $(cat "$tmp/out")"
  else
    fail "C API under 256 MiB: $(cat "$tmp/err")"
  fi
else
  echo "skip: C API check (no $lib/libuvit.so or no cc)"
fi

# The ranks of an MPI job on one node share its memory: 2 ranks of a --batch 1024 (512 each:
# 1.7 GiB of buffers, which one process under 3 GiB holds) are refused at 1.5 GiB each.
if command -v mpirun >/dev/null; then
  UVIT_TEST_MEM_LIMIT=$((3 << 30)) OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo \
    OMP_NUM_THREADS=1 timeout 300 mpirun --bind-to none --timeout 280 -np 2 "$UVIT" train \
    --config fmnist_uvit_tiny --out "$tmp/mpi" --steps 1 --batch 1024 --no-grid -q \
    >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if grep -q "built without MPI" "$tmp/err"; then
    echo "skip: mpirun check (built without MPI)"
  elif [ $rc = 0 ] || ! grep -q "^uvit: error: \(rank [01]: \)\?out of memory: the buffers need [0-9.]* GiB ([0-9.]* MiB of them $model), each of the 2 ranks on this machine has 1.5 GiB (3.0 GiB, UVIT_TEST_MEM_LIMIT, shared); with --batch 1024: give smaller values$" "$tmp/err"; then
    fail "mpirun -np 2 train --batch 1024 under 3 GiB: exit $rc: $(cat "$tmp/err")"
  else
    echo "ok: mpirun -np 2: $(grep -m1 'out of memory' "$tmp/err")"
  fi
else
  echo "skip: mpirun check (no mpirun)"
fi

exit $fails
