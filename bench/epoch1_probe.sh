#!/usr/bin/env bash
# On the GPU machine: how much longer epoch 1 takes than epoch 2, and where (issue 8's "epoch 1
# at most 3 s longer"). For each cuDNN candidate limit in LIMITS (default "10"; see
# bench/autotune_probe.sh) one `resnet train --epochs 2` process on all of CIFAR-10 (JPEG copy)
# with the sample's settings, logging at steps 0 and 1562 only: the second log's img/s covers
# steps 1 to 1562 (the partial batch included), so the epoch's time less those steps' time is
# step 0's. Prints the start-up line (data reading, and the warm-up step beside it) and the
# process's whole wall time. Expects build-device/ built and
# .device/cifar-10-jpeg.tar.xz carried. Logs to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
mkdir -p "$out" /tmp/cifar
[ -d /tmp/cifar/train ] || tar xJf .device/cifar-10-jpeg.tar.xz -C /tmp/cifar
for limit in ${LIMITS:-10}; do
  echo "== RESNET_CUDNN_BENCHMARK_LIMIT=$limit"
  start=$(date +%s.%N)
  RESNET_CUDNN_BENCHMARK_LIMIT=$limit build-device/resnet train --data /tmp/cifar --epochs 2 --log-every 1562 \
    --restart --checkpoint-dir "/tmp/e1-$limit" "$@" 2>&1 | tee "$out/epoch1-$limit.log" \
    | grep -E '^Epoch|img/s|Start-up'
  echo "whole process: $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
done
