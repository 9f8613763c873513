#!/usr/bin/env bash
# Issue 29 on a GPU machine, as calls of under 10 minutes chained on one warm machine (caches and the
# store stay in $W between calls).  From the repository root, with the data, the fp16 default teacher
# and the lark wheel carried in .gpu/ (glue/, teacher/, whl/):
#   preset     the gpu preset as a new user runs it, >= 300 s of evaluation (bench_gpu_preset.py)
#   fault      the out-of-memory fault check, then `exprsearch distill last --preset gpu` of that run
#   bias S     bench_bias.py at D = 4H on the gpu preset's protocol until S seconds (resumable)
# Each phase copies its JSON, logs and the card to $OUT.
set -u
phase=${1:?preset|fault|bias}
W=${ES_WORK:-/tmp/es29}
mkdir -p "$W" "$OUT"
python3 -c "import lark" 2>/dev/null || python3 -m pip install -q --no-index --no-deps .gpu/whl/*.whl
export PYTHONUNBUFFERED=1 PYTHONPATH=.
COMMON=(--data-dir .gpu/glue --teacher .gpu/teacher --cache-dir "$W/cache")
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
    start=$SECONDS
    python3 -m exprsearch distill last --store "$W/preset/gpu.db" --preset gpu --task SST-2 --seeds 2 \
      "${COMMON[@]}" -o "$W/student" --overwrite --json > "$OUT/distill.json" 2> "$OUT/distill.log"
    echo "distill exit $? in $((SECONDS - start)) s" | tee -a "$OUT/distill.log"
    cp "$W/student/README.md" "$OUT/student_card.md" 2>/dev/null
    python3 - "$W/student" >> "$OUT/distill.log" 2>&1 <<'PY'
import os, sys
d = sys.argv[1]
print("student directory:", {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))})
PY
    ;;
  bias)
    python3 benchmarks/bench_bias.py --preset gpu "${COMMON[@]}" --base-width 1536 --ratio 2 --seeds 2 --check-seeds 1 \
      --deadline "${2:?seconds}" --resume --out "$W/bench_bias_gpu.json" > "$OUT/bias.log" 2>&1
    cp "$W/bench_bias_gpu.json" "$OUT/" ;;
esac
