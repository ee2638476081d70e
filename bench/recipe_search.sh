#!/usr/bin/env bash
# On a GPU machine of one or more GPUs: training recipes compared side by side, one run per GPU at
# once (issue 12); with more runs than GPUs, each GPU runs its share one after another (run k on
# GPU k mod the GPUs). Each argument is NAME=FLAGS, the flags given to `resnet train` after
# `--recipe fast`, e.g.
#   bench/recipe_search.sh "crop25=--crop-scale 0.25,1 --holdout 5000" "crop50=--crop-scale 0.5,1 --holdout 5000"
# Choices are made on held-out training images (--holdout N), never on the test split. Builds
# `resnet` (bench/device_run.sh), unpacks .device/cifar-10-jpeg.tar.xz once, and writes each
# run's log, metrics.csv and wall time (process start to exit) to $OUT as train-NAME.log and
# metrics-NAME.csv. COMMON adds flags to every run. The runs use a copy of the binary
# (/tmp/resnet-recipe), so a rebuild while they run does not touch them.
#
# A run longer than one device call (10 minutes) can go on in two ways, on a machine kept warm:
# - DETACH=1 starts the runs in their own process sessions (which outlive the call) and returns at
#   once; `WAIT=SECONDS bench/recipe_search.sh --collect NAME...` in this or a later call waits up
#   to SECONDS for them to end, then copies their logs and metrics to $OUT (again at each call).
#   The run is unbroken, so its wall time is one process's.
# - STOP_AFTER=SECONDS sends each run SIGTERM after that long (it writes resume.pt at the next step
#   and exits 143), and RESUME=1 in the next call continues the runs from /tmp/ck-NAME instead of
#   starting them over (same arguments). metrics.csv's elapsed_s then adds up the parts' wall times.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-device-out}
logs=/tmp/recipe-logs  # outlives $OUT, which each call empties
mkdir -p "$out" "$logs" /tmp/cifar

# One run: GPU index, name, then its flags. Its log ends with "NAME: exit RC, S s wall".
run_one() {
  local gpu=$1 name=$2
  shift 2
  local start restart=(--restart) limit=() rc
  start=$(date +%s.%N)
  [ "${RESUME:-0}" = 1 ] && restart=()
  [ -n "${STOP_AFTER:-}" ] && limit=(timeout -s TERM "$STOP_AFTER")
  CUDA_VISIBLE_DEVICES=$gpu "${limit[@]}" /tmp/resnet-recipe train --data /tmp/cifar --recipe fast "$@" \
    "${restart[@]}" --checkpoint-dir "/tmp/ck-$name" > "$logs/train-$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc, $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s wall" >> "$logs/train-$name.log"
}

# One run of a NAME=FLAGS argument on a GPU (COMMON's flags added).
run_spec() {
  local gpu=$1 spec=$2
  # shellcheck disable=SC2206  # the flags are words
  local flags=(${spec#*=} ${COMMON:-})
  run_one "$gpu" "${spec%%=*}" "${flags[@]}"
}

# Copies each named run's log and metrics to $OUT and prints its last lines.
report() {
  for name in "$@"; do
    cp "$logs/train-$name.log" "$out/" 2>/dev/null
    cp /tmp/ck-"$name"/*/metrics.csv "$out/metrics-$name.csv" 2>/dev/null
    echo "== $name"
    grep -E "^Epoch|top-1|exit" "$logs/train-$name.log" 2>/dev/null | tail -4
  done
}

case "${1:-}" in
  --run-chain)  # GPU, then the NAME=FLAGS arguments it runs one after another
    shift
    gpu=$1
    shift
    for spec in "$@"; do run_spec "$gpu" "$spec"; done
    exit ;;
  --collect)
    shift
    deadline=$(($(date +%s) + ${WAIT:-0}))
    for name in "$@"; do  # no log: this is a fresh machine, the one that ran it was handed back
      [ -f "$logs/train-$name.log" ] || { echo "--collect: no run $name on this machine ($logs/train-$name.log: none); a machine left idle is handed back with its runs" >&2; exit 3; }
    done
    for name in "$@"; do
      until grep -q "^$name: exit" "$logs/train-$name.log" 2>/dev/null || [ "$(date +%s)" -ge $deadline ]; do
        sleep 5
      done
    done
    report "$@"
    exit 0 ;;
esac

TARGETS=resnet TESTS=none SKIP_DATA=1 SKIP_PEER=1 bash bench/device_run.sh || exit 1
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cp build-device/resnet /tmp/resnet-recipe || exit 1
[ -d /tmp/cifar/train ] || tar xJf .device/cifar-10-jpeg.tar.xz -C /tmp/cifar
gpus=$(nvidia-smi -L | wc -l)
[ "$gpus" -ge 1 ] || { echo "no GPU (nvidia-smi -L)"; exit 2; }
names=()
for spec in "$@"; do
  names+=("${spec%%=*}")
  : > "$logs/train-${spec%%=*}.log"  # (empty until it starts: --collect knows a run queued behind another)
done
pids=()
for ((gpu = 0; gpu < gpus && gpu < $#; gpu++)); do
  share=()
  args=("$@")
  for ((k = gpu; k < $#; k += gpus)); do share+=("${args[$k]}"); done
  if [ "${DETACH:-0}" = 1 ]; then
    setsid bash "$PWD/bench/recipe_search.sh" --run-chain "$gpu" "${share[@]}" < /dev/null > /dev/null 2>&1 &
  else
    bash "$PWD/bench/recipe_search.sh" --run-chain "$gpu" "${share[@]}" &
    pids+=($!)
  fi
done
if [ "${DETACH:-0}" = 1 ]; then
  echo "started ${names[*]} in their own sessions; collect with: bench/recipe_search.sh --collect ${names[*]}"
  exit 0
fi
wait "${pids[@]}"
report "${names[@]}"
