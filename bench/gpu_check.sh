#!/usr/bin/env bash
# The GPU checks of the scene-pipeline and speed issues in one call of the lent device machine, each
# step time-boxed so a slow one cannot eat the session's device time. A device session is short
# (15 minutes, machine start-up included), so this is prepared and dry-run on a CPU machine first.
#
# On this machine, first (the device has torch, scipy and scikit-image but not these):
#   ../shared/device/wheels.sh pipeline orjson pydantic pydantic-core pydantic-settings python-dotenv \
#       annotated-types typing-inspection
# Then, through the device tool:  command "bash bench/gpu_check.sh", carry [".whl"], timeout 600.
# Dry run here without a GPU:     DEVICE=cpu SIZES=1024 PYTHON=.venv/bin/python bash bench/gpu_check.sh
#
# Writes under $OUT (else var/gpu-check): summary.txt (one line per step: exit code, seconds),
# each step's log, bench.jsonl (the benchmark's JSON lines), and prints the summary and the
# benchmark's headline figures last.
set -u
out=${OUT:-var/gpu-check}
device=${DEVICE:-cuda}
sizes=${SIZES:-10000,20000}
py=${PYTHON:-python3}
mkdir -p "$out"
: > "$out/summary.txt"
started=$(date +%s)

if [ -d .whl ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

step() {  # step NAME SECONDS COMMAND...: run it under a time limit (cut to what is left of 560 s
  # since the start, so the call ends inside its 600 s), log it, record rc and seconds
  local name=$1 limit=$2 start rc left
  shift 2
  left=$((560 - ($(date +%s) - started)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    echo "$name skipped: ${left} s left" >> "$out/summary.txt"
    return
  fi
  start=$(date +%s)
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc $(($(date +%s) - start)) s" >> "$out/summary.txt"
}

step gpu 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step versions 60 "$py" -c "import torch, rasterio, distributed, shapely; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'rasterio', rasterio.__version__, 'distributed', distributed.__version__, 'shapely', shapely.__version__)"
# The CUDA tests (CPU and GPU give the same features, eager and compiled; the normalise kernels)
# and the inference tests.
step tests 240 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_normalise_triton.py \
  tests/test_inference.py
# The Triton kernels against the plain PyTorch they replace (bench/kernels.py; issue #6: a kernel
# stays only where it beats PyTorch).
step kernels 60 "$py" -m bench.kernels --out "$out/kernels.jsonl"
# Model-only and end to end at the pipeline's own tile and batch, against the naive loop; the
# TorchGeo-style baseline needs torchgeo, which the device lacks. The naive loop's whole-scene
# polygonising is CPU work, so it runs at 10,000 px at most here.
step bench 330 "$py" -m bench --device "$device" --sizes "$sizes" --baselines naive --baseline-max-size 10000 \
  --cache-dir /tmp/railsight-bench --out "$out/bench.jsonl"
# The host side alone (CPU work): vectorising bench tiles on 16 threads of one process against 16
# processes. On a 2-core CPU threads gave 1.20-1.29x and processes 1.61-1.69x, so a GPU host now runs
# a two-threaded worker process per two cores (service.cluster.local_layout) rather than one
# process of a thread per core.
step host-parallel 90 "$py" -m bench.host_parallel --workers 16 --tiles 192 --cache-dir /tmp/railsight-bench \
  --out "$out/host_parallel.jsonl"
# The same eager run at the largest size in other layouts of the workers sharing the GPU (each
# process its own CUDA context and model copy): one process of 16 threads (the layout before) and
# 4 processes of 4. Compare e2e_mpx_s, gpu_peak_mb and time_share with the default layout's line
# (bench.jsonl says the workers and threads of each).
for procs in 1 4; do
  step "bench-workers$procs" 100 "$py" -m bench --device "$device" --sizes "${sizes##*,}" --baselines none \
    --workers "$procs" --cache-dir /tmp/railsight-bench --out "$out/bench.jsonl"
done
# The same at the largest size with the model under torch.compile (issue #6: "torch.compile where it
# helps"), on the scene the step above rendered; the workers compile before the timing starts and
# the JSON line gives that time as cluster.compile_s. Compare its e2e_mpx_s with the eager line's.
step bench-compiled 150 "$py" -m bench --device "$device" --sizes "${sizes##*,}" --baselines none --compile \
  --cache-dir /tmp/railsight-bench --out "$out/bench.jsonl"

# The CUDA training path (issue #3): steps of batch 32 on CUDA with bf16 autocast and the moving
# average, going on from the shipped weights, for whatever is left of 560 s since the start (a
# minute of it for the loader to start and the 40 scenes the run records its colour range from), so
# the call ends inside its 600 s. The steps per second it logs size a longer run on this GPU, and
# its weights come back under $OUT to be evaluated against the shipped ones. It goes on from them
# rather than starting afresh: 12 loaders render about 650 crops a second (extrapolated from one CPU
# core, MODEL.md session 31), so the few minutes left here draw far fewer crops than the shipped
# weights' 15 CPU hours did, and a run from scratch could not catch up.
left=$((560 - ($(date +%s) - started)))
if [ "$left" -gt 120 ]; then
  step train "$left" "$py" -m service.cli train --device "$device" --init shipped --steps 100000 --batch 32 \
    --workers 12 --seed 36 --season-share snow=0.3 --ema 0.999 --max-minutes "$(((left - 60) / 60)).$(((left - 60) % 60 * 10 / 60))" \
    --quiet --out "$out/gpu-train.pt"
  # the weights (about 6 MB each, average and raw) come back for `railsight eval` on a CPU machine;
  # the checkpoint (23 MiB, with the optimiser's state) is over $OUT's 16 MiB a file
  rm -f "$out/gpu-train.ckpt"
else
  echo "train skipped: ${left} s left" >> "$out/summary.txt"
fi

cat "$out/summary.txt"
tail -n 2 "$out/tests.log"
cat "$out/kernels.jsonl" "$out/host_parallel.jsonl" 2>/dev/null
tail -n 3 "$out/train.log" 2>/dev/null
"$py" - "$out/bench.jsonl" <<'EOF'
import json, sys
keys = ("size", "tile", "batch", "compiled", "cluster", "e2e_mpx_s", "model_only_mpx_s", "e2e_over_model_only", "read_ceiling_mpx_s",
        "e2e_over_read_ceiling", "e2e_over_naive", "peak_rss_mb", "gpu_peak_mb", "time_share")
try:
    lines = [json.loads(x) for x in open(sys.argv[1]) if x.startswith("{")]
except OSError:
    lines = []
for line in lines:
    print(json.dumps({"gpu": (line.get("machine") or {}).get("gpu"), **{k: line.get(k) for k in keys}}))
if not lines:
    print("no benchmark lines: see bench.log")
EOF
