#!/usr/bin/env bash
# On the GPU machine: ResNet-50 on the whole of CIFAR-10 (JPEG copy, image folder) with the
# sample's settings (224 px, batch 32, SGD lr 0.001 momentum 0.9 wd 1e-4, seed 0) for EPOCHS
# epochs, once per variant in VARIANTS (default: "fast" = the defaults, bf16 + channels-last +
# CUDA graphs, fused batch norm; "unfused" = the same with --fused off; "fp32" = --amp off
# --channels-last off --cuda-graphs off; "fp16" = --amp fp16, the fused-convolution path, and
# "fp16-unfused" = --amp fp16 --fused off; "recipe-fast" = --recipe fast, docs/RECIPES.md, and
# "recipe-fast-fp32" = the same with --amp off), then `resnet bench` at the same settings for
# comparison (SKIP_BENCH=1: none), and the original sample's pipeline (peer_bench.py --mode
# seed; SKIP_SEED=1: not). Each run's wall time, process start to exit, goes to wall-VARIANT.txt.
# Expects build-device/ built (bench/device_run.sh); .device/cifar-10-jpeg.tar.xz and
# .device/peer_bench.py carried. Logs to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
epochs=${EPOCHS:-3}
mkdir -p "$out" /tmp/cifar
[ -d /tmp/cifar/train ] || tar xJf .device/cifar-10-jpeg.tar.xz -C /tmp/cifar
for variant in ${VARIANTS:-fast fp32}; do
  case $variant in
    fast) flags=() ;;
    unfused) flags=(--fused off) ;;
    fp32) flags=(--amp off --channels-last off --cuda-graphs off) ;;
    fp16) flags=(--amp fp16) ;;                        # every bottleneck over cuDNN's fused convolutions
    fp16-unfused) flags=(--amp fp16 --fused off) ;;
    recipe-fast) flags=(--recipe fast) ;;
    recipe-fast-fp32) flags=(--recipe fast --amp off) ;;
    *) echo "unknown variant $variant"; exit 2 ;;
  esac
  start=$(date +%s.%N)
  PYTHONUNBUFFERED=1 build-device/resnet train --data /tmp/cifar --epochs "$epochs" --save-model --restart \
    --checkpoint-dir "/tmp/ck-$variant" "${flags[@]}" 2>&1 | tee "$out/train-$variant.log"
  echo "$variant: $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s wall" | tee "$out/wall-$variant.txt"
  cp "/tmp/ck-$variant/resnet50/metrics.csv" "$out/metrics-$variant.csv" 2>/dev/null
  [ "${SKIP_BENCH:-0}" = 1 ] || build-device/resnet bench --batch-size 32 --steps 200 "${flags[@]}" | tee -a "$out/bench-$variant.jsonl"
done
[ "${SKIP_SEED:-0}" = 1 ] || python3 .device/peer_bench.py --mode seed --bs 32 | tee -a "$out/peer.jsonl"
