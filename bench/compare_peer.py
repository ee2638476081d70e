"""Side-by-side training throughput: our `resnet bench` against the Python peer (peer_bench.py:
torchvision ResNet-50, same optimiser, data already on the GPU), row by row at matching settings,
in one process tree on one card. Runs alternate (ours, peer, ours, peer, ...) so that clock and
thermal drift hit both; each figure is the median of --repeats runs. Prints a Markdown table
last and writes every raw JSON line to --log.

  python3 bench/compare_peer.py --resnet build/resnet --peer .device/peer_bench.py --log $OUT/bench.jsonl

A row pairs our flags with a peer mode (see ROWS); --rows picks some by name.
"""
import argparse, json, statistics, subprocess, sys

FP32 = ['--amp', 'off', '--channels-last', 'off', '--cuda-graphs', 'off']
BF16_EAGER = ['--amp', 'bf16', '--channels-last', 'on', '--cuda-graphs', 'off']
BF16_GRAPH = ['--amp', 'bf16', '--channels-last', 'on', '--cuda-graphs', 'on']
# fp16: every bottleneck over cuDNN's fused convolutions (issue 9)
FP16_GRAPH = ['--amp', 'fp16', '--channels-last', 'on', '--cuda-graphs', 'on']
# name: (batch size, our flags, our label, peer mode)
ROWS = {
    'fp32-32': (32, FP32, 'fp32 eager', 'gpu-fp32'),
    'bf16-32': (32, BF16_EAGER, 'bf16+cl eager', 'gpu-bf16-cl'),
    'graph-32': (32, BF16_GRAPH, 'bf16+cl graph', 'graph'),
    'fp32-256': (256, FP32, 'fp32 eager', 'gpu-fp32'),
    'bf16-256': (256, BF16_EAGER, 'bf16+cl eager', 'gpu-bf16-cl'),
    'graph-256': (256, BF16_GRAPH, 'bf16+cl graph', 'gpu-bf16-cl'),
    'unfused-256': (256, BF16_GRAPH + ['--fused', 'off'], 'bf16+cl graph, --fused off', 'gpu-bf16-cl'),
    'compile-256': (256, BF16_GRAPH, 'bf16+cl graph', 'compile'),
    'fp16-32': (32, FP16_GRAPH, 'fp16+cl graph, fused convolutions', 'graph'),
    'fp16-256': (256, FP16_GRAPH, 'fp16+cl graph, fused convolutions', 'gpu-bf16-cl'),
    'fp16-compile-256': (256, FP16_GRAPH, 'fp16+cl graph, fused convolutions', 'compile'),
}

ap = argparse.ArgumentParser()
ap.add_argument('--resnet', required=True)
ap.add_argument('--peer', required=True)
ap.add_argument('--rows', nargs='+', default=list(ROWS), choices=list(ROWS))
ap.add_argument('--steps', type=int, default=40)
ap.add_argument('--warmup', type=int, default=8)
ap.add_argument('--repeats', type=int, default=2)
ap.add_argument('--log', default=None)
a = ap.parse_args()
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


ours_cache = {}  # rows that share our settings share our runs
table, card = [], None
for name in a.rows:
    bs, flags, label, peer_mode = ROWS[name]
    key = (bs, tuple(flags))
    ours = [] if key not in ours_cache else ours_cache[key]
    peer = []
    for i in range(a.repeats):
        if key not in ours_cache:
            ours.append(run([a.resnet, 'bench', '--model', 'resnet50', '--batch-size', str(bs), '--device', 'cuda',
                             '--steps', str(a.steps), '--warmup', str(a.warmup)] + flags))
        # torch.compile pays minutes of compilation per run: once is enough
        if peer_mode == 'compile' and i > 0:
            continue
        peer.append(run([sys.executable, a.peer, '--mode', peer_mode, '--bs', str(bs),
                         '--steps', str(a.steps), '--warmup', str(a.warmup)]))
    ours_cache[key] = ours
    card = ours[0]['device_name']
    o = statistics.median(r['img_per_s'] for r in ours)
    p = statistics.median(r['img_per_s'] for r in peer)
    table.append((bs, label, peer_mode, o, p, ours[0]['peak_mem_mib'] / 1024, peer[0]['peak_mem_gib'],
                  [r['img_per_s'] for r in ours], [r['img_per_s'] for r in peer]))

print(f"\ncard: {card}; resnet50, 10 classes, 224 px, train step, median of {a.repeats} runs")
print('| batch | ours | img/s | peer mode | img/s | ratio | peak GiB ours | peak GiB peer | runs ours | runs peer |')
print('|---|---|---|---|---|---|---|---|---|---|')
for bs, label, mode, o, p, mo, mp, ro, rp in table:
    print(f'| {bs} | {label} | {o:.1f} | {mode} | {p:.1f} | {o / p:.2f} | {mo:.2f} | {mp:.2f} | {ro} | {rp} |')
