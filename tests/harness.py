"""What the Python tests share: one "ok"/"FAIL" line per check, running a program, the exit code."""
import subprocess
import sys

failures = []


def check(cond, what):
    print(('ok   ' if cond else 'FAIL ') + what, flush=True)
    if not cond:
        failures.append(what)


def run(*cmd, timeout=900):
    """Runs cmd; returns (exit code, stdout and stderr together)."""
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def resnet_and_sample():
    """The command line of the tests that drive `resnet` on the embedded sample: --resnet BINARY
    --sample FOLDER. Returns (args, run), run(*flags) running the binary as run() does."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument('--resnet', required=True)
    ap.add_argument('--sample', required=True)
    args = ap.parse_args()
    return args, lambda *flags: run(args.resnet, *flags)


def test_transform(path, size):
    """An image file through `resnet`'s test transform, in torch: Resize(size * 256 / 224) with
    bilinear half-pixel sampling (what F.interpolate computes when upsampling), CenterCrop(size),
    ImageNet mean/std. A [1, 3, size, size] float tensor."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    x = torch.from_numpy(np.array(Image.open(path).convert('RGB'))).permute(2, 0, 1)[None].float()
    r = size * 256 // 224
    x = F.interpolate(x, size=(r, r), mode='bilinear', align_corners=False)
    top = int(round((r - size) / 2.0))
    x = x[:, :, top:top + size, top:top + size] / 255.0
    return (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def finish():
    print(f'{len(failures)} of the checks failed' if failures else 'all checks passed')
    sys.exit(1 if failures else 0)
