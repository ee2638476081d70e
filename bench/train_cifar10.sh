#!/usr/bin/env bash
# On the GPU machine: ResNet-50 on the whole of CIFAR-10 (JPEG copy, image folder) with the
# sample's settings (224 px, batch 32, SGD lr 0.001 momentum 0.9 wd 1e-4, fp32) for EPOCHS
# epochs, then the original sample's pipeline (peer_bench.py --mode seed) in the same call.
# Expects build-device/ built (bench/device_run.sh) or builds it; .device/cifar-10-jpeg.tar.xz
# and .device/peer_bench.py carried. Logs to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
epochs=${EPOCHS:-3}
mkdir -p "$out" /tmp/cifar
tar xJf .device/cifar-10-jpeg.tar.xz -C /tmp/cifar
PYTHONUNBUFFERED=1 build-device/resnet train --data /tmp/cifar --epochs "$epochs" --save-model \
  --checkpoint-dir /tmp/ck 2>&1 | tee "$out/train.log"
cp /tmp/ck/resnet50/metrics.csv "$out/" 2>/dev/null
build-device/resnet test --data /tmp/cifar --checkpoint-dir /tmp/ck 2>&1 | tee "$out/test.log"
for bs in 32; do python3 .device/peer_bench.py --mode seed --bs $bs | tee -a "$out/peer.jsonl"; done
