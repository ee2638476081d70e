#!/usr/bin/env bash
# On the GPU machine, one call (issue 15): an ImageNet-like folder (bench/make_imagenet_like.py:
# TRAIN training and VAL validation JPEGs of 200-800 px, about 100 KB, a few CMYK, grey,
# progressive and PNG-named files, made from .device/cifar-10-jpeg.tar.xz), then
#   1. data_bench decode: every file decoded on all cores (libjpeg-turbo, the CPU path);
#   2. data_bench loader: the training loader alone at batch 256, 224 px (read + decode + crop +
#      flip + normalise + transfer), and its peak memory;
#   3. resnet bench: the training step alone at the same settings (fp16, the fused path);
#   4. resnet train on the folder, 2 epochs at the same settings: epoch 2's img/s from metrics.csv;
# and a table of the four. Expects .deps, .device (the archive) carried; builds with
# bench/device_run.sh. Logs and JSON lines go to $OUT.
# Not here yet: the nvJPEG path (not built) and DALI's pipeline beside ours (its wheel, 189 MiB,
# is larger than what a call carries).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-device-out}
train=${TRAIN:-20000}
val=${VAL:-2000}
folder=/tmp/inet
mkdir -p "$out"
TARGETS="resnet data_bench" TESTS=none SKIP_DATA=1 SKIP_PEER=1 bash bench/device_run.sh || exit 1
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ ! -d "$folder/train" ]; then
  start=$(date +%s.%N)
  python3 bench/make_imagenet_like.py --source .device/cifar-10-jpeg.tar.xz --out "$folder" \
    --train "$train" --val "$val" | tee "$out/folder.json" || exit 1
  echo "folder written in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s"
fi
du -sh "$folder"
build-device/data_bench decode --folder "$folder" | tee "$out/decode.jsonl"
build-device/data_bench loader --folder "$folder" --device cuda --batch-size 256 --image-size 224 --batches 60 |
  tee "$out/loader.jsonl"
build-device/resnet bench --model resnet50 --device cuda --amp fp16 --batch-size 256 --steps 30 --warmup 8 \
  > "$out/bench.txt" 2>&1
tail -3 "$out/bench.txt"
build-device/resnet train --data "$folder" --model resnet50 --amp fp16 --batch-size 256 --epochs 2 \
  --checkpoint-dir /tmp/ck-inet --restart > "$out/train.log" 2>&1
echo "train exit $?"
cp /tmp/ck-inet/resnet50/metrics.csv "$out/metrics-inet.csv" 2>/dev/null
python3 - "$out" <<'EOF'
import csv, json, sys
out = sys.argv[1]
rows = []
def last_json(name):
    try:
        return [json.loads(l) for l in open(f'{out}/{name}') if l.startswith('{')]
    except OSError:
        return []
for d in last_json('decode.jsonl'):
    rows.append((f"decode, {d['split']} ({d['threads']} threads)", d['img_per_s'], ''))
for d in last_json('loader.jsonl'):
    rows.append(('loader, batch 256, 224 px, CPU decode', d['img_per_s'], f"peak RSS {d['peak_rss_mib']:.0f} MiB"))
for d in last_json('bench.txt'):
    rows.append((f"resnet bench, {d['precision']}, batch {d['batch_size']}", d['img_per_s'], ''))
try:
    epochs = list(csv.DictReader(open(f'{out}/metrics-inet.csv')))
    rows.append(('resnet train on the folder, epoch 2', float(epochs[-1]['img_per_s']), ''))
except (OSError, IndexError, KeyError):
    pass
print('| what | img/s | |\n|---|---|---|')
for what, v, note in rows:
    print(f'| {what} | {v:,.0f} | {note} |')
EOF
