#!/usr/bin/env bash
# On the GPU machine, one call (issue 15): an ImageNet-like folder (bench/make_imagenet_like.py:
# TRAIN training and VAL validation JPEGs of 200-800 px, about 100 KB, a few CMYK, grey,
# progressive and PNG-named files, made from .device/cifar-10-jpeg.tar.xz), then
#   1. data_bench decode: every file decoded on all cores (libjpeg-turbo, the CPU path);
#   2. data_bench gather: the CPU's part of a batch alone (read + decode each training crop into
#      the batch, no transform) on all cores; data_bench loader: the training loader alone at batch
#      256, 224 px (read + decode + crop + flip + normalise + transfer), and its peak memory: CPU
#      decoding, then --gpu-decode (nvJPEG); each with one batch gathered at a time and with three;
#   3. resnet bench: the training step alone at the same settings (fp16, the fused path); then the
#      loader again while that step runs in the same process, on the same GPU, as in training
#      (data_bench loader --beside-step: nvJPEG with the step on CUDA's default stream, as `resnet
#      train` runs it, and on a stream of its own; CPU decoding), each part of a gather timed;
#   4. resnet train on the folder, TRAIN_EPOCHS epochs (default 3) at the same settings, with
#      --gpu-decode and without: each epoch's img/s after the first from metrics.csv, and how long
#      its steps waited for data (the epoch lines say so where it is over 2% of the epoch), and a
#      trace of each batch (RESNET_LOADER_TRACE) read by bench/loader_trace.py into $OUT/loader-trace.md:
#      what the late batches' time went to;
#   5. where DALI is installed (/tmp/site-dali: bench/dali_parts.sh), DALI's training input on the
#      same folder (bench/dali_bench.py), its decoding on the GPU and on the CPU;
# and a table ($OUT/table.md). Expects .deps, .device (the archive) and .whl (nvidia-nvjpeg) carried;
# builds with bench/device_run.sh. Logs and JSON lines go to $OUT, packed at the end into
# $OUT/logs.tgz (PACK=0: left loose), since a device call brings back at most 8 files. TRAIN_DECODES picks the training runs
# (default "cpu gpu"; each takes about a minute): "gpu" is nvJPEG, "gpu-no-prealloc" nvJPEG
# allocating its buffers as it decodes (RESNET_NVJPEG_PREALLOCATE=0), "gpu-pipeline" its hardware
# decoder with its pipeline (RESNET_NVJPEG_PIPELINE=1; off by default); each may add environment
# settings for its run after colons, as "gpu:RESNET_NVJPEG_SPLIT=gpu:RESNET_GATHERS_AT_ONCE=4" (the
# nvJPEG settings the caller exported do not reach the runs); a run named again runs again, its logs
# named NAME-2, NAME-3 (pairs in turn: "gpu gpu:RESNET_NVJPEG_SPLIT=0.6 gpu gpu:RESNET_NVJPEG_SPLIT=0.6").
# PARTS picks the parts (default
# "decode gather loader bench beside train dali"; the folder is written whatever it says). TRACE=1
# adds a traced run of the loader beside the step (see 3.). TESTS=REGEX runs those tests first
# (device_run.sh's; BUILD_TARGETS then names their binaries beside resnet and data_bench).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-device-out}
train=${TRAIN:-20000}
val=${VAL:-2000}
folder=/tmp/inet
mkdir -p "$out"
# Each training run: its decode, then its settings (VAR=VALUE each); checked before the other parts
declare -A run_settings=()
for run in ${TRAIN_DECODES:-cpu gpu}; do
  IFS=: read -r -a words <<< "$run"
  case ${words[0]} in
    cpu|gpu) extra=() ;;
    gpu-no-prealloc) extra=(RESNET_NVJPEG_PREALLOCATE=0) ;;
    gpu-pipeline) extra=(RESNET_NVJPEG_PIPELINE=1) ;;
    *) echo "TRAIN_DECODES: '${words[0]}' (of '$run') is not cpu, gpu, gpu-no-prealloc or gpu-pipeline" >&2; exit 2 ;;
  esac
  for setting in "${words[@]:1}"; do
    if [[ ! $setting =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; then
      echo "TRAIN_DECODES: '$setting' (of '$run') is not VAR=VALUE" >&2
      exit 2
    fi
  done
  run_settings[$run]="${extra[*]} ${words[*]:1}"
done
targets="resnet data_bench"
[ "${TRACE:-0}" = 1 ] && targets+=" cuda_api_trace"
TARGETS=${BUILD_TARGETS:-$targets} TESTS=${TESTS:-none} SKIP_DATA=1 SKIP_PEER=1 bash bench/device_run.sh || exit 1
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ ! -d "$folder/train" ]; then
  start=$(date +%s.%N)
  python3 bench/make_imagenet_like.py --source .device/cifar-10-jpeg.tar.xz --out "$folder" \
    --train "$train" --val "$val" | tee "$out/folder.json" || exit 1
  echo "folder written in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s"
fi
du -sh "$folder"
parts=" ${PARTS:-decode gather loader bench beside train dali} "
part() { [[ $parts == *" $1 "* ]]; }
part decode && build-device/data_bench decode --folder "$folder" | tee "$out/decode.jsonl"
part gather && build-device/data_bench gather --folder "$folder" --batch-size 256 --image-size 224 --batches 40 | tee "$out/gather.jsonl"
part loader && for decode in "" --gpu-decode; do
  for gathers in 1 3; do  # one batch gathered at a time, then the streamed source's three
    build-device/data_bench loader --folder "$folder" --device cuda --batch-size 256 --image-size 224 --batches 60 \
      --gathers-at-once $gathers $decode
  done
done | tee "$out/loader.jsonl"
if part bench; then
  build-device/resnet bench --model resnet50 --device cuda --amp fp16 --batch-size 256 --steps 30 --warmup 8 \
    > "$out/bench.txt" 2>&1
  tail -3 "$out/bench.txt"
fi
# The loader beside the step in one process, both on the GPU at once as in training: where each
# part of a gather slows. (In two processes the GPU time-slices between them: no figure of
# training. The step's own figure is not reported.) The step, on CUDA's default stream as in
# training, keeps at most two steps queued as training does; a row where it failed before the
# loader's last batch says beside_step_ended_early. nvJPEG with its buffers set up ahead and
# batches filled up to a fixed count (the default), then without fixed counts, then with neither
# (nvJPEG's own way), then the CPU path. TRACE=1: nvJPEG with the default settings again under bench/cuda_api_trace.cpp
# (where the threads wait in CUDA calls), its report in $out/trace-beside-STREAM.txt.
# BESIDE_STREAMS (default "default") picks the step's streams: "default", "own" or both; BESIDE_SETTINGS
# (default "1 1,1 0,0 0") the nvJPEG rows (RESNET_NVJPEG_PREALLOCATE and _FIXED_COUNT of each).
if part beside; then
  for stream in ${BESIDE_STREAMS:-default}; do
    IFS=, read -r -a all_settings <<< "${BESIDE_SETTINGS:-1 1,1 0,0 0}"
    for settings in "${all_settings[@]}"; do
      read -r preallocate fixed extra <<< "$settings"
      if [ -z "$fixed" ] || [ -n "$extra" ]; then
        echo "BESIDE_SETTINGS: '$settings' is not two values (PREALLOCATE FIXED_COUNT, as \"1 1\")" >&2
        exit 2
      fi
      RESNET_NVJPEG_PREALLOCATE=$preallocate RESNET_NVJPEG_FIXED_COUNT=$fixed build-device/data_bench loader \
        --folder "$folder" --device cuda --batch-size 256 --image-size 224 --batches 60 --gathers-at-once 3 \
        --gpu-decode --beside-step "$stream"
    done
    if [ "${TRACE:-0}" = 1 ] && [[ " ${BUILD_TARGETS:-cuda_api_trace} " != *" cuda_api_trace "* ]]; then
      echo "TRACE=1: BUILD_TARGETS lacks cuda_api_trace; no trace" >&2
    elif [ "${TRACE:-0}" = 1 ] && [ -f build-device/libcuda_api_trace.so ]; then
      CUDA_INJECTION64_PATH=$PWD/build-device/libcuda_api_trace.so RESNET_CUDA_TRACE=$out/trace-beside-${stream//:/-}.txt \
        build-device/data_bench loader --folder "$folder" --device cuda --batch-size 256 --image-size 224 \
        --batches 60 --gathers-at-once 3 --gpu-decode --beside-step "$stream" > "$out/trace-beside-${stream//:/-}.jsonl"
    fi
    build-device/data_bench loader --folder "$folder" --device cuda --batch-size 256 --image-size 224 --batches 60 \
      --gathers-at-once 3 --beside-step "$stream"
  done
fi | tee "$out/loader-beside.jsonl"
traces=()  # this call's loader traces
declare -A seen=()  # how many times each run has come so far
part train && for run in ${TRAIN_DECODES:-cpu gpu}; do
  flags=(--gpu-decode)
  [[ $run == cpu || $run == cpu:* ]] && flags=()
  read -r -a settings <<< "${run_settings[$run]}"
  name=${run//[^A-Za-z0-9_.-]/_}
  # a run given twice (to pair two settings in turn) keeps each its own logs: name-2, name-3, ...
  repeat=$((${seen[$name]:-0} + 1)); seen[$name]=$repeat
  [ "$repeat" -gt 1 ] && name+="-$repeat"
  rm -f "$out/loader-trace-$name.csv"
  # (the defaults first, so that what the caller exported does not reach the run; its own after)
  env RESNET_NVJPEG_PREALLOCATE=1 RESNET_NVJPEG_FIXED_COUNT=1 RESNET_NVJPEG_PIPELINE=0 RESNET_NVJPEG_SPLIT=balanced \
    RESNET_NVJPEG_SHRINK=0 \
    RESNET_LOADER_TRACE="$out/loader-trace-$name.csv" "${settings[@]}" \
    build-device/resnet train --data "$folder" --model resnet50 --amp fp16 --batch-size 256 --epochs "${TRAIN_EPOCHS:-3}" "${flags[@]}" \
    --checkpoint-dir "/tmp/ck-inet-$name" --restart > "$out/train-$name.log" 2>&1
  echo "train ($run) exit $?"
  echo "$run" > "$out/train-$name.what"
  echo "$repeat" > "$out/train-$name.repeat"
  echo "$name" >> "$out/train-runs.txt"
  cp "/tmp/ck-inet-$name/resnet50/metrics.csv" "$out/metrics-inet-$name.csv" 2>/dev/null
  [ -f "$out/loader-trace-$name.csv" ] && traces+=("$out/loader-trace-$name.csv")
done
if [ ${#traces[@]} -gt 0 ]; then
  python3 bench/loader_trace.py "${traces[@]}" > "$out/loader-trace.md" || echo "loader_trace.py failed ($?)" >&2
fi
if part dali && [ -d /tmp/site-dali/nvidia/dali ]; then
  for decoder in mixed cpu; do
    PYTHONPATH=/tmp/site-dali:/tmp/site${PYTHONPATH:+:$PYTHONPATH} python3 bench/dali_bench.py --folder "$folder/train" \
      --decoder $decoder --batches 60 2> "$out/dali-$decoder.log" | tail -1
  done | tee "$out/dali.jsonl"
fi
python3 - "$out" <<'EOF' | tee "$out/table.md"
import csv, json, re, sys
out = sys.argv[1]
rows = []
def last_json(name):
    try:
        return [json.loads(l) for l in open(f'{out}/{name}') if l.startswith('{')]
    except OSError:
        return []
for d in last_json('decode.jsonl'):
    rows.append((f"decode, {d['split']} ({d['threads']} threads)", d['img_per_s'], ''))
for d in last_json('gather.jsonl'):
    rows.append((f"gather alone (CPU: read + decode the crops into the batch, {d['threads']} threads)", d['img_per_s'], ''))
def split(d):  # a gather's parts with nvJPEG, ms each (data_bench's gpu_decode)
    g = d.get('gpu_decode')
    if not g:
        return ''
    return (f"; a gather: reading {g['read_ms_per_batch']:.1f} ms, headers {g['headers_ms_per_batch']:.1f}, "
            f"GPU decode {g['gpu_ms_per_batch']:.1f} ({100 * g['gpu_share']:.0f}% of the images), "
            f"CPU decode {g['cpu_ms_per_batch']:.1f}; nvJPEG set up {g.get('gpu_setups_per_batch', 0):.2f} times a batch"
            + (f"; zeros {g['zeros_ms_per_batch']:.1f}, waiting for the CPU's part {g['cpu_wait_ms_per_batch']:.1f}, "
               f"its upload {g['upload_ms_per_batch']:.1f}" if 'upload_ms_per_batch' in g else ''))
for name in ('loader.jsonl', 'loader-beside.jsonl'):
    for d in last_json(name):
        how = 'nvJPEG' if 'nvJPEG' in d['source'] else 'CPU'
        for note in ("not pre-allocated", "counts not fixed", "pipelined", "counts shrunk"):
            if note in d['source']:
                how += f" ({'buffers ' if 'allocated' in note else ''}{note})"
        beside = ''
        if 'beside_step' in d:
            where = d['beside_step']
            stream = "CUDA's default stream" if where == 'default' else 'a stream of its own'
            beside = f", beside the training step in this process (on {stream}; the step {d.get('beside_step_img_per_s', 0):,.0f} img/s)"
            if d.get('beside_step_ended_early'):
                beside += ' (the step failed first: not a figure of the two)'
        rows.append((f"loader, batch 256, 224 px, {how} decoding, {d.get('gathers_at_once', 1)} batch(es) gathered at once{beside}",
                     d['img_per_s'], f"peak RSS {d['peak_rss_mib']:.0f} MiB{split(d)}"))
for d in last_json('dali.jsonl'):
    how = 'nvJPEG (mixed)' if d['decoder'] == 'mixed' else 'CPU'
    rows.append((f'DALI, batch 256, 224 px, {how} decoding', d.get('img_per_s', 0), d.get('error', '')))
for d in last_json('bench.txt'):
    rows.append((f"resnet bench, {d['precision']}, batch {d['batch_size']}", d['img_per_s'], ''))
try:  # the training runs in TRAIN_DECODES' order
    runs = list(dict.fromkeys(l.strip() for l in open(f'{out}/train-runs.txt')))
except OSError:
    runs = []
for name in runs:
    path = f'{out}/metrics-inet-{name}.csv'
    try:  # the run as TRAIN_DECODES gave it: DECODE[:VAR=VALUE...]
        decode, *settings = open(f'{out}/train-{name}.what').read().strip().split(':')
    except OSError:
        decode, settings = name, []
    how = {'cpu': 'CPU', 'gpu': 'GPU', 'gpu-no-prealloc': 'GPU (buffers not pre-allocated)',
           'gpu-pipeline': 'GPU (pipelined)'}.get(decode, decode)
    given = f" ({', '.join(settings)})" if settings else ''
    try:  # a run given again: which time (its logs NAME-2, ...)
        repeat = int(open(f'{out}/train-{name}.repeat').read())
    except (OSError, ValueError):
        repeat = 1
    if repeat > 1:
        given += f", run {repeat}"
    try:
        epochs = list(csv.DictReader(open(path)))
        # each epoch's last line (" Top-5 accuracy: ..." or " Not tested ..."), in order
        ends = [l for l in open(f'{out}/train-{name}.log') if l.startswith((' Top-5 accuracy', ' Not tested'))]
        for e, end in zip(epochs[1:], ends[1:]):
            waited = end.split('(')[-1].split(' s of it')[0] + ' s' if 'waiting for data' in end else 'under 2%'
            first = re.search(r'([0-9.]+) s for the first batch', end)
            if first:
                waited += f' ({first.group(1)} s for the first batch)'
            between = re.search(r'the GPU ([0-9.]+) s between steps', end)
            if between:
                waited += f', the GPU {between.group(1)} s between steps'
            transforming = re.search(r'([0-9.]+) s of that transforming', end)
            if transforming:
                waited += f' ({transforming.group(1)} s transforming)'
            rows.append((f"resnet train on the folder, epoch {e['epoch']}, {how} decoding{given}",
                         float(e['img_per_s']), f"{e['seconds']} s, waiting for data: {waited}"))
    except (OSError, IndexError, KeyError):
        pass
print('| what | img/s | |\n|---|---|---|')
for what, v, note in rows:
    print(f'| {what} | {v:,.0f} | {note} |')
EOF
# A device call brings back at most 8 files: the tables stay loose, the rest goes into logs.tgz
# (PACK=0 leaves every file loose; run.log, the caller's own, stays loose too).
if [ "${PACK:-1}" = 1 ]; then
  (cd "$out" && find . -maxdepth 1 -type f ! -name logs.tgz ! -name table.md ! -name loader-trace.md ! -name run.log -printf '%P\n' |
    tar czf logs.tgz -T - --remove-files)
fi
