#!/usr/bin/env bash
# The GPU run: fused and separate training speed, the default phase 1 study with fused
# trials (through Ray; without Ray if that breaks), the reference budgets through Ray, and
# the GPU busy fraction, in that order,
# each step under its own time limit and all of them inside one deadline, every line and
# file under $OUT (one tarball, so that the device tool brings it all back).
#
#   bash benchmarks/gpu_run.sh            # on a lent GPU: bash .whl/install.sh first
#   bash benchmarks/gpu_run.sh --smoke    # the same steps on this CPU, tiny, as a dry run
#
# Env: OUT (default ./gpu-out), DEADLINE_S (default 540: seconds from the start after
# which no step starts and a running one is cut).
set -uo pipefail
SMOKE=0; [ "${1:-}" = "--smoke" ] && SMOKE=1
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT/work"
DEADLINE_S=${DEADLINE_S:-540}
START=$(date +%s)
export PYTHONUNBUFFERED=1
LOG="$OUT/work/run.log"
say() { echo "$*" | tee -a "$LOG"; }
left() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }

# step NAME LIMIT_S CMD...: runs CMD with at most LIMIT_S seconds (fewer if the deadline
# is nearer), its output in work/NAME.txt and the log; a failure or a cut never stops the rest
step() {
  local name=$1 limit=$2; shift 2
  local l; l=$(left)
  [ "$l" -lt "$limit" ] && limit=$l
  if [ "$limit" -lt 15 ]; then say "## $name: not run (deadline)"; LAST_RC=125; return; fi
  say "## $name (limit ${limit}s, at $(( $(date +%s) - START ))s): $*"
  local t0; t0=$(date +%s)
  timeout -k 10 "$limit" "$@" > >(tee "$OUT/work/$name.txt" >> "$LOG") 2>&1
  local rc=$?
  LAST_RC=$rc
  say "## $name: exit $rc after $(( $(date +%s) - t0 ))s$( [ $rc = 124 ] && echo ' (cut at its limit)')"
}

# checkpoints and Tune's own folders stay behind (the device tool brings back 16 MiB a file)
pack() { tar czf "$OUT/gpu_run.tgz" --exclude='*.pt' --exclude='tune' --exclude='.lock' \
           -C "$OUT/work" . && cp "$LOG" "$OUT/run.log"; ls -la "$OUT"; }
trap pack EXIT

say "# gpu_run.sh, $(date -u +%FT%TZ), commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}, smoke=$SMOKE"
nvidia-smi --query-gpu=name,memory.total,driver_version,utilization.gpu --format=csv 2>&1 | tee -a "$LOG" || true
python3 -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'python', sys.version.split()[0])" 2>&1 | tee -a "$LOG"
RES="$OUT/work/results"

# a fused study cut by its limit: the groups that finished, as a study of their own
collect_partial() {
  local runs="$RES/phase1-fused/runs"
  if [ -d "$runs" ] && [ ! -f "$RES/phase1-fused/trials.csv" ]; then
    step collect_partial 30 python3 -m addray.collect "$runs"/* --study phase1-fused-finished \
      --results "$RES"
  fi
}

if [ $SMOKE = 1 ]; then
  step fused_throughput 120 python3 benchmarks/fused_throughput.py --device cpu --steps 5 \
    --configs phase1_2k --members 1 4 --compiled-members 2 --compile both --csv "$OUT/work/fused_throughput.csv"
  step phase1_fused 240 python3 sweeps/phase1.py --smoke-test --gpus 0 --fuse on \
    --configs "configs/sizes/phase1_2k.yaml,configs/sizes/phase1_8k.yaml" --lr 1e-3,1e-2 --seeds 2 \
    --compare config --results "$RES" --study phase1-fused-ray
  step fused_study "${SMOKE_FUSED_LIMIT:-240}" python3 benchmarks/fused_study.py --phase 1 --smoke --device cpu --parallel 2 \
    --only phase1_2k phase1_8k --results "$RES"
  collect_partial
  step reference_budgets 300 python3 benchmarks/reference_budgets.py --results "$RES" --phases 1 \
    -- --smoke-test
  step report_all 60 python3 -m addray.report "$RES"
else
  step fused_throughput 150 python3 benchmarks/fused_throughput.py --device cuda --steps 30 \
    --configs phase1_lower phase1_2k phase1_upper phase1_tiny --members 1 8 16 32 \
    --compiled-members 16 --compile both --compiled-configs phase1_2k phase1_lower \
    --csv "$OUT/work/fused_throughput.csv"
  # the default phase 1 study as a user runs it, each config's 9 runs one fused trial
  step phase1_fused 170 env TORCHINDUCTOR_COMPILE_THREADS=2 python3 sweeps/phase1.py --gpus 1 \
    --gpus-per-trial 0.125 --fuse on --results "$RES" --study phase1-fused-ray
  python3 -m ray.scripts.scripts stop --force >/dev/null 2>&1 || true
  if [ "$LAST_RC" != 0 ] && [ "$LAST_RC" != 124 ]; then  # it broke: the same groups without Ray
    step fused_study 150 env TORCHINDUCTOR_COMPILE_THREADS=2 python3 benchmarks/fused_study.py \
      --phase 1 --device cuda --parallel 8 --results "$RES"
    collect_partial
  fi
  step reference_budgets 150 python3 benchmarks/reference_budgets.py --results "$RES" \
    -- --gpus 1 --gpus-per-trial 0.25
  python3 -m ray.scripts.scripts stop --force >/dev/null 2>&1 || true
  step gpu_busy 50 python3 benchmarks/gpu_busy.py --config configs/phase1_upper.yaml --members 16
  step report_all 30 python3 -m addray.report "$RES"
fi
# Ray's daemons outlive a driver cut by its limit
python3 -m ray.scripts.scripts stop --force >/dev/null 2>&1 || true
say "# done at $(( $(date +%s) - START ))s"
