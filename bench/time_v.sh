# Sourced by the bench scripts: time_v LABEL TIMEFILE CMD... runs CMD (stdout dropped) under
# /usr/bin/time -v, its report in TIMEFILE, and prints one line: wall and CPU seconds (user +
# system), peak RSS, minor page faults, and the load average before the run. A failing CMD prints
# its report and exits.
time_v() {
  local label=$1 tf=$2 load
  shift 2
  load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -v "$@" >/dev/null 2>"$tf" || { cat "$tf"; exit 1; }
  awk -v label="$label" -v load="$load" -F': ' '
    /Elapsed \(wall clock\)/ { n = split($2, t, ":"); wall = t[n] + 60 * t[n - 1] + 3600 * (n > 2 ? t[1] : 0) }
    /User time/ { cpu += $2 } /System time/ { cpu += $2 }
    /Maximum resident set size/ { rss = $2 / 1024 } /Minor/ { flt = $2 }
    END { printf "%-40s %6.2f s wall %6.2f s CPU  peak RSS %6.0f MB  %7d faults  load %s\n",
          label, wall, cpu, rss, flt, load }' "$tf"
}

# alternate OLD NEW PAIRS: the caller's `one LABEL BINARY` for two builds, OLD, NEW, NEW, OLD per
# pair, so that a drift of the machine's load falls on both alike.
alternate() {
  local p
  for p in $(seq "$3"); do
    one OLD "$1"
    one NEW "$2"
    one NEW "$2"
    one OLD "$1"
  done
}
