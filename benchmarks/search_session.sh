#!/usr/bin/env bash
# One GPU session of issue 12's item 3, split over device calls of at most 10 minutes each:
#   start STOP_S   fine-tune and cache the teacher, start the evolution search (`--preset gpu`) and a
#                  random search of the same protocol side by side in the background (setsid: they
#                  outlive the call while the machine stays warm), watch them until STOP_S seconds
#   watch STOP_S   watch until STOP_S seconds (the next call, while the machine is still warm)
#   finish STOP_S  wait for the evolution search at most until STOP_S - FINAL_S seconds, stop both
#                  searches, then re-train the best students with the final protocol (bench_search.py)
# Every phase copies consistent snapshots of both stores and the logs to $OUT (sqlite backup: the
# WAL is folded in), so a lost machine loses nothing but time: `--resume` continues from them.
# Environment: DATA, TEACHER, CACHE (folders), PRESET (gpu), EXTRA (options of every command), EVO_ARGS / RND_ARGS (extra search options),
# FINAL_S (seconds kept for the re-training, default 230), BENCH_ARGS (bench_search.py options), RESUME_FROM (a folder of evo.db / rnd.db snapshots,
# e.g. an earlier call's $OUT or benchmarks/results/item3: copied into $ES_WORK when it has none, so a fresh
# machine resumes the runs).
set -u
phase=${1:?start|watch|finish}
stop_s=${2:?seconds}
W=${ES_WORK:-/tmp/es}
DATA=${DATA:-.gpu/glue}
TEACHER=${TEACHER:-.gpu/teacher}
CACHE=${CACHE:-../.cache/es}
OUT=${OUT:-$W/out}
FINAL_S=${FINAL_S:-230}
# shellcheck disable=SC2206
COMMON=(--preset "${PRESET:-gpu}" --data-dir "$DATA" --teacher "$TEACHER" --cache-dir "$CACHE" ${EXTRA:-})
mkdir -p "$W" "$OUT"
for name in evo.db rnd.db; do
  [ -n "${RESUME_FROM:-}" ] && [ -f "$RESUME_FROM/$name" ] && [ ! -f "$W/$name" ] && cp "$RESUME_FROM/$name" "$W/"
done
export PYTHONUNBUFFERED=1

snapshot() {
  python3 - "$W" "$OUT" <<'EOF'
import sqlite3, sys, pathlib
w, out = map(pathlib.Path, sys.argv[1:])
for name in ("evo.db", "rnd.db"):
    if (w / name).exists():
        src, dst = sqlite3.connect(w / name, timeout=60), sqlite3.connect(out / name)
        src.backup(dst)
        dst.close(); src.close()
EOF
  cp "$W"/*.log "$OUT"/ 2>/dev/null
}

running() { [ -f "$W/$1.pid" ] && kill -0 "$(cat "$W/$1.pid")" 2>/dev/null; }

watch_until() {  # $1: seconds since the call began; prints each search's latest progress line
  while [ "$SECONDS" -lt "$1" ] && { running evo || running rnd; }; do
    sleep 20
    for r in evo rnd; do
      [ -f "$W/$r.log" ] && echo "[$SECONDS s] $r: $(grep -a '\[stage\|stage [0-9]:\|error\|Error' "$W/$r.log" | tail -1)"
    done
  done
  snapshot
}

launch() {  # $1: name, rest: search options; resumes the run if its store has one
  local name=$1; shift
  local resume=()
  [ -f "$W/$name.db" ] && resume=(--resume last)
  setsid nohup python3 -m exprsearch search "${COMMON[@]}" --store "$W/$name.db" "${resume[@]}" "$@" \
    >>"$W/$name.log" 2>&1 < /dev/null &
  echo $! > "$W/$name.pid"
}

case $phase in
  start)
    python3 -m exprsearch teacher "${COMMON[@]}" --task "${TASKS:-MRPC,RTE,CoLA,SST-2}" >"$W/teacher.log" 2>&1
    tail -8 "$W/teacher.log"
    # shellcheck disable=SC2086
    launch evo ${EVO_ARGS:-}
    sleep 5
    # shellcheck disable=SC2086
    launch rnd --sampler random --stages 1 --workers 1 ${RND_ARGS:-}
    watch_until "$stop_s" ;;
  watch)
    watch_until "$stop_s" ;;
  finish)
    watch_until $((stop_s - FINAL_S))
    for r in evo rnd; do running $r && kill -- -"$(cat "$W/$r.pid")" && echo "stopped $r at $SECONDS s"; done
    sleep 3
    snapshot
    tail -30 "$W/evo.log"
    # shellcheck disable=SC2086
    python3 benchmarks/bench_search.py --store "$W/evo.db" --runs "last,$W/rnd.db:last" --data-dir "$DATA" \
      --teacher "$TEACHER" --cache-dir "$CACHE" --out "$OUT/bench_search.json" ${BENCH_ARGS:-} 2>&1 | tee "$W/bench.log"
    snapshot ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
