#!/usr/bin/env bash
# On the GPU machine: what cuDNN autotuning costs before the first graphed step, and what a
# smaller candidate list (RESNET_CUDNN_BENCHMARK_LIMIT, PyTorch's benchmark_limit) gives up in
# speed. One `resnet bench` process per limit in LIMITS (default "10 4 1"; 10 is PyTorch's
# default), batch BATCH (default 32), defaults otherwise; prints warmup_s (the first 5 steps:
# 3 eager, the capture, one replay) and img/s. Expects build-device/ built. Logs to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
mkdir -p "$out"
for limit in ${LIMITS:-10 4 1}; do
  echo -n "limit $limit: "
  RESNET_CUDNN_BENCHMARK_LIMIT=$limit build-device/resnet bench --batch-size "${BATCH:-32}" --steps 200 \
    | tee -a "$out/autotune.jsonl" \
    | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); print('warmup_s', r['warmup_s'], ' img/s', r['img_per_s'], ' fused', r['fused'])"
done
