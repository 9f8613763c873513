#!/usr/bin/env bash
# Issue 29 on a GPU machine, as calls of under 10 minutes chained on one warm machine (caches and the
# store stay in $W between calls).  From the repository root, with the data, the fp16 default teacher
# and the lark wheel carried in .gpu/ (glue/, teacher/, whl/):
#   preset     the gpu preset as a new user runs it, >= 300 s of evaluation (bench_gpu_preset.py)
#   fault      the out-of-memory fault check, then `exprsearch distill last --preset gpu` of that run
#   bias S     bench_bias.py at D = 4H on the gpu preset's protocol until S seconds (resumable)
#   budget B S the budget study's search: `search --preset gpu --budget-params ffn:B --gates`, 150
#              stage-1 candidates + re-ranking, stopped (SIGTERM: marked interrupted) after S seconds;
#              run again, it resumes the stored run
#   finals B S bench_search.py on that run: best vs the width-matched standard FFN, 5 fresh paired
#              seeds + 1 convergence check, until S seconds (resumable)
#   distill B  `exprsearch distill last --preset gpu` of that run's best (SST-2, 2 seeds): issue 29 item 2
# ES_BASE_WIDTH=1536 runs the budget searches at D = 4H (default: the preset's D = H); ES_WORK moves $W;
# a store, finals or bias JSON missing from $W is first copied from $ES_STORES (default benchmarks/results/gpu29/fit).
# Each phase copies its JSON, logs and the card to $OUT.
set -u
phase=${1:?preset|fault|bias}
W=${ES_WORK:-/tmp/es29}
mkdir -p "$W" "$OUT"
python3 -c "import lark" 2>/dev/null || python3 -m pip install -q --no-index --no-deps .gpu/whl/*.whl
export PYTHONUNBUFFERED=1 PYTHONPATH=.
COMMON=(--data-dir .gpu/glue --teacher .gpu/teacher --cache-dir "$W/cache")
STORES=${ES_STORES:-benchmarks/results/gpu29/fit}  # committed stores and JSON a fresh machine starts from
from_stores() { [ -f "$W/$1" ] || [ ! -f "$STORES/$1" ] || cp "$STORES/$1" "$W/"; }  # unless $W has its own

distill_run() {  # `exprsearch distill last` of the store $1 (SST-2, 2 seeds): time, card, directory
  local start=$SECONDS
  python3 -m exprsearch distill last --store "$1" --preset gpu --task SST-2 --seeds 2 \
    "${COMMON[@]}" -o "$W/student" --overwrite --json > "$OUT/distill.json" 2> "$OUT/distill.log"
  echo "distill exit $? in $((SECONDS - start)) s" | tee -a "$OUT/distill.log"
  cp "$W/student/README.md" "$OUT/student_card.md" 2>/dev/null
  python3 - "$W/student" >> "$OUT/distill.log" 2>&1 <<'PY'
import os, sys
d = sys.argv[1]
print("student directory:", {os.path.relpath(os.path.join(r, f), d): os.path.getsize(os.path.join(r, f))
                             for r, _, fs in os.walk(d) for f in sorted(fs)})
PY
}
case $phase in
  preset)
    python3 benchmarks/bench_gpu_preset.py "${COMMON[@]}" --seconds 300 --setup-limit 250 --work "$W/preset" \
      --out "$OUT/bench_gpu_preset.json"
    cp "$OUT/bench_gpu_preset.json" "$W/"
    cp "$W/preset/search.log" "$OUT/" ;;
  fault)
    cp "$W/bench_gpu_preset.json" "$OUT/" 2>/dev/null
    python3 benchmarks/bench_gpu_preset.py "${COMMON[@]}" --fault-check-only --out "$OUT/bench_gpu_preset.json"
    cp "$OUT/bench_gpu_preset.json" "$W/"
    distill_run "$W/preset/gpu.db" ;;
  budget)
    B=${2:?budget, e.g. 50%}; tag=ffn${B%\%}
    from_stores "$tag.db"
    resume=(); [ -f "$W/$tag.db" ] && resume=(--resume last)
    timeout "${3:?seconds}" python3 -m exprsearch search --preset gpu --budget-params "ffn:$B" --gates \
      --candidates 150 --stages 1 --rerank 5 --rerank-seeds 2 --store "$W/$tag.db" "${COMMON[@]}" "${resume[@]}" \
      ${ES_BASE_WIDTH:+--base-width "$ES_BASE_WIDTH"} \
      >> "$W/$tag.log" 2>&1
    echo "search exit $?" >> "$W/$tag.log"
    cp "$W/$tag.log" "$W/$tag.db" "$OUT/" ;;
  finals)
    B=${2:?budget}; tag=ffn${B%\%}
    from_stores "bench_search_$tag.json"
    python3 benchmarks/bench_search.py --store "$W/$tag.db" --runs last "${COMMON[@]}" --seeds 5 --check-seeds 1 \
      --deadline "${3:?seconds}" --resume --out "$W/bench_search_$tag.json" > "$OUT/finals_$tag.log" 2>&1
    cp "$W/bench_search_$tag.json" "$OUT/" ;;
  distill)
    B=${2:?budget}; tag=ffn${B%\%}
    distill_run "$W/$tag.db" ;;
  bias)
    from_stores "bench_bias_gpu.json"
    python3 benchmarks/bench_bias.py --preset gpu "${COMMON[@]}" --base-width 1536 --ratio 2 --seeds 2 --check-seeds 1 \
      --deadline "${2:?seconds}" --resume --out "$W/bench_bias_gpu.json" > "$OUT/bias.log" 2>&1
    cp "$W/bench_bias_gpu.json" "$OUT/" ;;
esac
