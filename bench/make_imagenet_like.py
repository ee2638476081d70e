"""Writes an ImageNet-like image folder for the loader benchmarks of issue 15.

    python3 bench/make_imagenet_like.py --source .device/cifar-10-jpeg.tar.xz --out /tmp/inet \
        --train 20000 --val 2000

Each file is one of CIFAR-10's images (read straight from the archive, or from an image folder)
upscaled to a random size of 200-800 pixels a side with a fine texture on top, so that it
compresses about as ImageNet's photographs do (about 100 KB at 500 x 375), saved as
OUT/{train,val}/<class>/<n>.JPEG. A few are of the other kinds ImageNet holds: CMYK JPEGs, grey
JPEGs, progressive JPEGs and PNGs named .JPEG. The same arguments write the same files. Prints
one JSON line: counts of each kind, the mean file size and the mean side.
"""
import argparse, io, json, os, random, tarfile
from multiprocessing import Pool

import numpy as np
from PIL import Image

# one file in this many of each kind (the rest: baseline RGB JPEGs)
KINDS = (('cmyk', 397), ('grey', 251), ('png', 199), ('progressive', 11))


def source_images(path):
    """(class name, JPEG bytes) of the training split of the archive or image folder at `path`."""
    out = []
    if os.path.isdir(path):
        root = os.path.join(path, 'train')
        for cls in sorted(os.listdir(root)):
            for name in sorted(os.listdir(os.path.join(root, cls))):
                with open(os.path.join(root, cls, name), 'rb') as f:
                    out.append((cls, f.read()))
        return out
    with tarfile.open(path) as tar:
        for member in tar:
            parts = member.name.split('/')
            if member.isfile() and len(parts) >= 3 and parts[-3] == 'train' and parts[-1].lower().endswith(('.jpg', '.jpeg', '.png')):
                out.append((parts[-2], tar.extractfile(member).read()))
    out.sort()
    return out


def kind_of(n):
    for kind, every in KINDS:
        if n % every == every - 1:
            return kind
    return 'rgb'


def write_one(job):
    out_dir, split, n, cls, data, seed = job
    rng = np.random.default_rng([seed, n, 0 if split == 'train' else 1])
    side = lambda: int(rng.integers(200, 801))
    w, h = side(), side()
    image = Image.open(io.BytesIO(data)).convert('RGB').resize((w, h), Image.BICUBIC)
    # fine texture: photographs hold detail at every scale, an upscaled 32-pixel image holds none
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0, 9.0, size=(h, w, 1)) + rng.normal(0, 4.0, size=(h, w, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    kind = kind_of(n)
    path = os.path.join(out_dir, split, cls, f'{n:06d}.JPEG')
    if kind == 'cmyk':
        image.convert('CMYK').save(path, 'JPEG', quality=90)
    elif kind == 'grey':
        image.convert('L').save(path, 'JPEG', quality=90)
    elif kind == 'png':
        image.save(path, 'PNG', compress_level=1)
    else:
        image.save(path, 'JPEG', quality=90, progressive=(kind == 'progressive'))
    return kind, os.path.getsize(path), (w + h) / 2


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--source', required=True, help='cifar-10-jpeg.tar.xz or an image folder with train/<class>/')
    p.add_argument('--out', required=True)
    p.add_argument('--train', type=int, default=20000, help='training images to write')
    p.add_argument('--val', type=int, default=2000, help='validation images to write')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workers', type=int, default=os.cpu_count())
    a = p.parse_args()
    images = source_images(a.source)
    if not images:
        raise SystemExit(f'{a.source}: no training images found (expected train/<class>/*.jpg)')
    order = random.Random(a.seed).sample(range(len(images)), len(images))
    jobs = []
    for split, count in (('train', a.train), ('val', a.val)):
        for cls in sorted({c for c, _ in images}):
            os.makedirs(os.path.join(a.out, split, cls), exist_ok=True)
        offset = 0 if split == 'train' else a.train
        for n in range(count):
            cls, data = images[order[(offset + n) % len(images)]]
            jobs.append((a.out, split, n, cls, data, a.seed))
    with Pool(a.workers) as pool:
        written = pool.map(write_one, jobs, chunksize=64)
    kinds = {k: sum(1 for w in written if w[0] == k) for k in ['rgb'] + [k for k, _ in KINDS]}
    print(json.dumps({'out': a.out, 'files': len(written), 'kinds': kinds,
                      'mean_kb': round(sum(w[1] for w in written) / len(written) / 1000, 1),
                      'mean_side': round(sum(w[2] for w in written) / len(written), 1)}))


if __name__ == '__main__':
    main()
