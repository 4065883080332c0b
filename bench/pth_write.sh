#!/usr/bin/env bash
# Writing a .pth (docs/formats.md "Writing .pth"): `uvit convert A.safetensors B.pth` against
# torch.save of the same state_dict in Debian's python3 (torch 1.13), on a big model's random
# weights (default dit_xl_2: 2.7 GB f32). Each run writes a fresh file; wall seconds and peak RSS.
# Whole processes, reading included: `uvit convert W.pth B.pth` against Python's torch.load(W.pth)
# + torch.save + fsync (uvit's atomic write fsyncs), and `uvit convert A.safetensors B.pth`
# against `convert A.safetensors C.safetensors`. Then torch.save alone, timed inside Python on a
# state_dict already in memory, with and without the fsync.
# With OLD (another build, e.g. /work/main/build/uvit), each run also times its two .pth
# conversions, alternated with UVIT's and torch's.
# Usage: bench/pth_write.sh [CONFIG] [RUNS] [UVIT] [OLD]   (default dit_xl_2, 3 runs, build/uvit)
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=${1:-dit_xl_2} RUNS=${2:-3} UVIT=${3:-build/uvit} OLD=${4:-}
PY=/usr/bin/python3
json=$CFG; [ -f "$json" ] || json=configs/$CFG.json
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
"$PY" bench/random_weights.py "$json" "$d/w.pth"
"$UVIT" convert "$d/w.pth" "$d/a.safetensors" >/dev/null
echo "$(du -h "$d/a.safetensors" | cut -f1) of weights; $(lscpu | sed -n 's/^Model name: *//p'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
measure() {  # label CMD...
  /usr/bin/time -v "${@:2}" >/dev/null 2>"$d/time" || { cat "$d/time"; exit 1; }
  local wall rss
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$d/time" | awk -F: '{print $(NF-1)*60+$NF}')
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$d/time")
  printf '%-44s %7.2f s  peak RSS %5.2f GB\n' "$1" "$wall" "$(echo "$rss/1048576" | bc -l)"
}
cat >"$d/resave.py" <<'PYEOF'
import os, sys, torch
sd = torch.load(sys.argv[1])
with open(sys.argv[2], "wb") as f:
    torch.save(sd, f)
    f.flush()
    os.fsync(f.fileno())
PYEOF
for r in $(seq "$RUNS"); do
  rm -f "$d"/b.pth "$d"/c.safetensors "$d"/t.pt
  if [ -n "$OLD" ]; then
    measure "OLD: uvit convert W.pth B.pth" "$OLD" convert "$d/w.pth" "$d/b.pth"
    rm -f "$d"/b.pth
  fi
  measure "uvit convert W.pth B.pth" "$UVIT" convert "$d/w.pth" "$d/b.pth"
  measure "python3: torch.load(W.pth), torch.save, fsync" "$PY" "$d/resave.py" "$d/w.pth" "$d/t.pt"
  rm -f "$d"/b.pth
  if [ -n "$OLD" ]; then
    measure "OLD: uvit convert A.safetensors B.pth" "$OLD" convert "$d/a.safetensors" "$d/b.pth"
    rm -f "$d"/b.pth
  fi
  measure "uvit convert A.safetensors B.pth" "$UVIT" convert "$d/a.safetensors" "$d/b.pth"
  measure "uvit convert A.safetensors C.safetensors" "$UVIT" convert "$d/a.safetensors" "$d/c.safetensors"
  echo "  load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
"$PY" - "$d" "$RUNS" <<'PYEOF'
import os, sys, time, torch
d, runs = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, "tests/reference")
from pth_write_check import read_safetensors
sd = read_safetensors(d + "/a.safetensors")
for r in range(runs):
    for sync in (False, True):
        out = d + "/t.pt"
        if os.path.exists(out):
            os.remove(out)
        t = time.perf_counter()
        with open(out, "wb") as f:
            torch.save(sd, f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        print("%-44s %7.2f s" % ("torch.save(sd)" + (" + fsync" if sync else ""),
                                 time.perf_counter() - t))
PYEOF
