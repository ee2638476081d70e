"""Batch norm in training, channels-last bf16, at ResNet-50's shapes: ATen's native kernels (what
torch.batch_norm picks for bf16 NHWC, and what `resnet train` runs today) against cuDNN's
(torch.cudnn_batch_norm, NHWC persistent mode), forward + backward, per step of all 53 layers.
Prints one JSON line per backend and batch size. Run on the GPU machine:
  python3 bench/bn_probe.py --bs 256
"""
import argparse, json, torch

ap = argparse.ArgumentParser()
ap.add_argument('--bs', type=int, nargs='+', default=[32, 256])
ap.add_argument('--reps', type=int, default=20)
a = ap.parse_args()
# (channels, side, count) of ResNet-50's BN layers at 224 px
LAYERS = [(64, 112, 1), (64, 56, 6), (256, 56, 4), (128, 56, 1), (128, 28, 7), (512, 28, 5), (256, 28, 1),
          (256, 14, 11), (1024, 14, 7), (512, 14, 1), (512, 7, 5), (2048, 7, 4)]


def run(backend, bs):
    work = []
    for c, s, n in LAYERS:
        x = torch.randn(bs, c, s, s, device='cuda', dtype=torch.bfloat16).to(memory_format=torch.channels_last)
        x.requires_grad_(True)
        w = torch.ones(c, device='cuda', requires_grad=True); b = torch.zeros(c, device='cuda', requires_grad=True)
        rm = torch.zeros(c, device='cuda'); rv = torch.ones(c, device='cuda')
        g = torch.randn_like(x)
        work.append((x, w, b, rm, rv, g, n))

    def step():
        for x, w, b, rm, rv, g, n in work:
            for _ in range(n):
                if backend == 'cudnn':
                    y = torch.cudnn_batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5)[0]
                else:
                    y = torch.batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5, False)
                y.backward(g)
    for _ in range(3): step()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(a.reps): step()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / a.reps


for bs in a.bs:
    for backend in ('native', 'cudnn'):
        try:
            print(json.dumps({'bs': bs, 'backend': backend, 'bn_fwd_bwd_ms_per_step': round(run(backend, bs), 3)}), flush=True)
        except Exception as ex:
            print(json.dumps({'bs': bs, 'backend': backend, 'error': str(ex)[:200]}), flush=True)
