#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs (fuzz/corpus/<target>/): small valid files of each kind a
reader takes, from which libFuzzer mutates. Run once; the outputs are committed (a few KB each).
    python3 fuzz/make_corpus.py"""
import io, json, os, tarfile, zipfile
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
rng = np.random.default_rng(13)


def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), 'wb') as f:
        f.write(data)


def image_bytes(mode, size, fmt, **kw):
    channels = {'L': 1, 'RGB': 3, 'RGBA': 4}.get(mode, 1)
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, 'L' if mode == 'P' else mode)
    if mode == 'P':
        img = img.convert('P')
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


# decode: JPEG (baseline, progressive, grey) and PNG (RGB, grey, RGBA, palette, 16-bit)
put('decode', 'rgb.jpg', image_bytes('RGB', (8, 8), 'JPEG', quality=90))
put('decode', 'progressive.jpg', image_bytes('RGB', (9, 7), 'JPEG', progressive=True))
put('decode', 'grey.jpg', image_bytes('L', (8, 8), 'JPEG'))
put('decode', 'rgb.png', image_bytes('RGB', (8, 8), 'PNG'))
put('decode', 'grey.png', image_bytes('L', (5, 3), 'PNG'))
put('decode', 'rgba.png', image_bytes('RGBA', (4, 4), 'PNG'))
put('decode', 'palette.png', image_bytes('P', (6, 6), 'PNG'))
grey16 = Image.fromarray(rng.integers(0, 65536, (4, 4), dtype=np.uint16))
out = io.BytesIO()
grey16.save(out, 'PNG')
put('decode', 'grey16.png', out.getvalue())

# cifar10: test_batch.bin of two records (label byte, 3 x 32 x 32 pixels)
records = b''.join(bytes([label]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for label in (0, 9))
put('cifar10', 'two_records.bin', records)
put('cifar10', 'one_record.bin', records[:3073])

# torch_save: state dicts as torch.save writes them (zip format, and the legacy one)
state = OrderedDict([('conv.weight', torch.randn(2, 1, 1, 1)), ('bn.num_batches_tracked', torch.tensor(3)),
                     ('fc.bias', torch.randn(3).half())])
for name, legacy in (('state_dict.pt', False), ('legacy.pt', True)):
    out = io.BytesIO()
    torch.save(state, out, _use_new_zipfile_serialization=not legacy)
    put('torch_save', name, out.getvalue())
out = io.BytesIO()
torch.save({'epoch': 2, 'settings': json.dumps({'seed': 0}), 'model.w': torch.zeros(2, 2).t()}, out)
put('torch_save', 'resume_like.pt', out.getvalue())

# checkpoint_json
put('checkpoint_json', 'full.json', json.dumps({'arch': 'resnet18', 'num_classes': 3, 'classes': ['a', 'b', 'c'],
                                                'image_size': 32, 'accuracy': 0.5, 'epoch': 2}, indent=1).encode())
put('checkpoint_json', 'minimal.json', b'{"arch": "resnet50", "classes": ["x"]}')

# archive: tar.gz and tar.xz with a folder and two files, a zip
def tar_bytes(mode):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        for name, data in (('data/a.txt', b'alpha\n'), ('data/sub/b.bin', bytes(range(40)))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
put('archive', 'two_files.tar.gz', tar_bytes('w:gz'))
put('archive', 'two_files.tar.xz', tar_bytes('w:xz'))
out = io.BytesIO()
with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('data/a.txt', b'alpha\n')
put('archive', 'one_file.zip', out.getvalue())
# mat5: MAT v5 files as scipy.io.savemat writes them: a struct array as the devkit's meta.mat
# (compressed and not), and a cell, char and number mix
from scipy.io import savemat
synsets = np.zeros((2, 1), dtype=[('ILSVRC2012_ID', 'O'), ('WNID', 'O'), ('children', 'O')])
synsets[0, 0] = (np.array([[1.0]]), 'n02119789', np.zeros((1, 0)))
synsets[1, 0] = (np.array([[2.0]]), 'n01440764', np.array([[1.0, 2.0]]))
for compress in (True, False):
    out = io.BytesIO()
    savemat(out, {'synsets': synsets}, do_compression=compress)
    put('mat5', f'synsets_{"z" if compress else "plain"}.mat', out.getvalue())
cell = np.empty((1, 3), dtype=object)
cell[0, 0], cell[0, 1], cell[0, 2] = 'text', np.arange(4, dtype=np.int16).reshape(2, 2), np.array([[1.5]], dtype=np.float32)
out = io.BytesIO()
savemat(out, {'c': cell, 'u': np.array([[7]], dtype=np.uint8)})
put('mat5', 'cell.mat', out.getvalue())
print('seeds in', root)
