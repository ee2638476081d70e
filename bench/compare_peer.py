"""Side-by-side training throughput: our `resnet bench` against the Python peer
(peer_bench.py: torchvision ResNet-50, same optimiser, data already on the GPU), at the same batch
sizes, in one process tree on one card. Runs alternate (ours, peer, ours, peer, ...) so that clock
and thermal drift hit both; each row reports the median of --repeats runs.
Prints a Markdown table last and writes every raw JSON line to --log.

  python3 bench/compare_peer.py --resnet build/resnet --peer .device/peer_bench.py \
      --batch-sizes 32 256 --log $OUT/bench.jsonl
"""
import argparse, json, statistics, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument('--resnet', required=True)
ap.add_argument('--peer', required=True)
ap.add_argument('--model', default='resnet50')
ap.add_argument('--batch-sizes', type=int, nargs='+', default=[32, 256])
ap.add_argument('--mode', default='gpu-fp32', help="peer_bench.py mode")
ap.add_argument('--steps', type=int, default=40)
ap.add_argument('--warmup', type=int, default=8)
ap.add_argument('--repeats', type=int, default=2)
ap.add_argument('--log', default=None)
a = ap.parse_args()
if a.model != 'resnet50':
    sys.exit('the peer benchmark times resnet50 only')

log = open(a.log, 'w') if a.log else None


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    line = [l for l in out.stdout.splitlines() if l.startswith('{')][-1]
    if log:
        log.write(line + '\n'); log.flush()
    print(line, flush=True)
    return json.loads(line)


rows = []
for bs in a.batch_sizes:
    ours, peer = [], []
    for _ in range(a.repeats):
        r = run([a.resnet, 'bench', '--model', a.model, '--batch-size', str(bs), '--device', 'cuda',
                 '--steps', str(a.steps), '--warmup', str(a.warmup)])
        ours.append(r)
        peer.append(run([sys.executable, a.peer, '--mode', a.mode, '--bs', str(bs),
                         '--steps', str(a.steps), '--warmup', str(a.warmup)]))
    o = statistics.median(r['img_per_s'] for r in ours)
    p = statistics.median(r['img_per_s'] for r in peer)
    rows.append((bs, o, p, ours[0]['peak_mem_mib'] / 1024, peer[0]['peak_mem_gib'],
                 [r['img_per_s'] for r in ours], [r['img_per_s'] for r in peer]))

print(f"\ncard: {ours[0]['device_name']}; {a.model}, fp32, train step, median of {a.repeats}")
print('| batch | resnet.cpp img/s | Python peer img/s | ratio | peak GiB ours | peak GiB peer | runs ours | runs peer |')
print('|---|---|---|---|---|---|---|---|')
for bs, o, p, mo, mp, ro, rp in rows:
    print(f'| {bs} | {o:.1f} | {p:.1f} | {o / p:.3f} | {mo:.2f} | {mp:.2f} | {ro} | {rp} |')
