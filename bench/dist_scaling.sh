#!/usr/bin/env bash
# On a GPU machine with several GPUs (device kinds nvidia-h100-x2 / -x4): ResNet-50 training
# throughput on 1, 2, ... N GPUs (GPUS, default: all), batch BS per GPU (default 256), bf16,
# channels-last: `resnet bench --nproc-per-node N` (eager: graphs are off with several processes,
# so the 1-GPU row runs --cuda-graphs off too, and once with graphs for reference) beside PyTorch's
# DistributedDataParallel (bench/ddp_peer.py under torchrun), alternating, in one call. Then a
# short `resnet train` over NCCL with --sync-bn on the embedded sample (replicas must agree).
# Expects build-device/resnet built (bench/device_run.sh, or cmake --build ... --target resnet).
# Logs to $OUT; prints a table.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
mkdir -p "$out"
gpus=${GPUS:-$(nvidia-smi -L | wc -l)}
bs=${BS:-256}
counts=1; n=2; while [ "$n" -le "$gpus" ]; do counts="$counts $n"; n=$((n * 2)); done
[ "$gpus" -gt 1 ] && [[ " $counts " != *" $gpus "* ]] && counts="$counts $gpus"
log=$out/scaling.jsonl
: > "$log"
build-device/resnet bench --batch-size "$bs" --steps 30 --warmup 8 | sed 's/^{/{"row":"ours-graph-1",/' >> "$log"
for n in $counts; do
  build-device/resnet bench --batch-size "$bs" --steps 30 --warmup 8 --cuda-graphs off --nproc-per-node "$n" \
    | sed "s/^{/{\"row\":\"ours-$n\",/" >> "$log"
  python3 -m torch.distributed.run --standalone --nproc-per-node "$n" bench/ddp_peer.py --bs "$bs" 2>>"$out/ddp.err" \
    | sed "s/^{/{\"row\":\"ddp-$n\",/" >> "$log"
done
python3 - "$log" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith('{'):
        r = json.loads(line); rows[r['row']] = r
def per(r): return r.get('img_per_s_per_process', r.get('img_per_s_per_gpu', r['img_per_s']))
print('| GPUs | ours img/s | per GPU | scaling | DDP img/s | per GPU | scaling | ours / DDP |')
print('|---|---|---|---|---|---|---|---|')
o1, d1 = rows.get('ours-1'), rows.get('ddp-1')
for k in sorted({int(k.split('-')[1]) for k in rows if k.startswith(('ours-', 'ddp-')) and k != 'ours-graph-1'}):
    o, d = rows.get(f'ours-{k}'), rows.get(f'ddp-{k}')
    so = f"{per(o) / per(o1):.3f}" if o and o1 else ''
    sd = f"{per(d) / per(d1):.3f}" if d and d1 else ''
    ratio = f"{o['img_per_s'] / d['img_per_s']:.2f}" if o and d else ''
    print(f"| {k} | {o['img_per_s'] if o else ''} | {per(o) if o else ''} | {so} | {d['img_per_s'] if d else ''} | "
          f"{per(d) if d else ''} | {sd} | {ratio} |")
g = rows.get('ours-graph-1')
if g: print(f"\n1 GPU with CUDA graphs (ours): {g['img_per_s']} img/s")
PY
rm -rf /tmp/dist-ck
timeout 300 build-device/resnet train --model resnet50 --data assets/cifar10-sample --nproc-per-node 2 --sync-bn \
  --batch-size 32 --epochs 1 --max-steps 10 --log-every 5 --checkpoint-dir /tmp/dist-ck 2>&1 | tee "$out/nccl-train.log" | tail -4
timeout 300 build-device/resnet train --model resnet50 --data assets/cifar10-sample --nproc-per-node 2 \
  --batch-size 32 --epochs 1 --checkpoint-dir /tmp/dist-ck2 2>&1 | tee "$out/nccl-train2.log" | grep -E "Accuracy|Replicas|error"
