#!/usr/bin/env bash
# On a GPU machine of one or more GPUs: training recipes compared side by side, one run per GPU at
# once (issue 12). Each argument is NAME=FLAGS, the flags given to `resnet train` after
# `--recipe fast`, e.g.
#   bench/recipe_search.sh "crop25=--crop-scale 0.25,1 --holdout 5000" "crop50=--crop-scale 0.5,1 --holdout 5000"
# Choices are made on held-out training images (--holdout N), never on the test split. Builds
# `resnet` (bench/device_run.sh), unpacks .device/cifar-10-jpeg.tar.xz once, and writes each
# run's log, metrics.csv and wall time (process start to exit) to $OUT as train-NAME.log and
# metrics-NAME.csv. COMMON adds flags to every run.
# A run longer than one device call (10 minutes) goes on in the next, on the same machine while it
# is still warm (its files in /tmp kept): STOP_AFTER=SECONDS sends each run SIGTERM after that long
# (it writes resume.pt at the next step and exits 143), and RESUME=1 in the next call continues the
# runs from /tmp/ck-NAME instead of starting them over (same arguments). metrics.csv's elapsed_s
# then adds up the parts' wall times.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-device-out}
mkdir -p "$out" /tmp/cifar
TARGETS=resnet TESTS=none SKIP_DATA=1 SKIP_PEER=1 bash bench/device_run.sh || exit 1
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ -d /tmp/cifar/train ] || tar xJf .device/cifar-10-jpeg.tar.xz -C /tmp/cifar
gpus=$(nvidia-smi -L | wc -l)
[ $# -le "$gpus" ] || { echo "$# runs for $gpus GPUs"; exit 2; }
i=0
pids=()
for spec in "$@"; do
  name=${spec%%=*}
  # shellcheck disable=SC2206  # the flags are words
  flags=(${spec#*=} ${COMMON:-})
  (
    start=$(date +%s.%N)
    restart=(--restart)
    [ "${RESUME:-0}" = 1 ] && restart=()
    limit=()
    [ -n "${STOP_AFTER:-}" ] && limit=(timeout -s TERM "$STOP_AFTER")
    CUDA_VISIBLE_DEVICES=$i "${limit[@]}" build-device/resnet train --data /tmp/cifar --recipe fast "${flags[@]}" \
      "${restart[@]}" --checkpoint-dir "/tmp/ck-$name" > "$out/train-$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc, $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s wall" >> "$out/train-$name.log"
    cp /tmp/ck-"$name"/*/metrics.csv "$out/metrics-$name.csv" 2>/dev/null
  ) &
  pids+=($!)
  i=$((i + 1))
done
wait "${pids[@]}"
for spec in "$@"; do
  name=${spec%%=*}
  echo "== $name: ${spec#*=} ${COMMON:-}"
  grep -E "^Epoch|top-1|exit" "$out/train-$name.log" | tail -4
done
