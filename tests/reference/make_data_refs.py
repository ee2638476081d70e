"""Fixtures for the data tests (tests/test_data.cpp), written with PIL and torchvision:

  folder/        an image folder: JPEG and PNG, RGB, grey, RGBA and palette images, mixed sizes
  kinds/         other files PIL opens: CMYK JPEGs as PIL writes them (Adobe-marked, inverted; one
                 converted from RGB, one with a K channel of its own), a progressive JPEG, a PNG
                 named .JPEG
  draft/         big.jpg (400 x 300) and draft.pt: PIL's draft() decodes of it at 1/2 and 1/4 (libjpeg's
                 DCT scaling, as decode_image's keep_side), draft.2 and draft.4, uint8 [3, H, W]
  gpu/           an image folder for GPU decoding: colour JPEGs at 4:4:4, 4:2:2 and 4:2:0 of odd
                 sizes, and the kinds that stay on the CPU (progressive, grey, CMYK, PNG named .JPEG)
  bad/           train/a holds a truncated JPEG and a text file named .jpg; train/b one good JPEG
  empty_class/   train/a holds an image, train/b nothing
  expected.pt    path (relative to the fixture folder) -> PIL's decoding, convert('RGB'), uint8 [3, H, W]
  transforms.pt  image.K (uint8 [3, H, W]) and torchvision's test transform of it, as the sample
                 writes it (PIL Resize + CenterCrop + ToTensor + Normalize): test.S.K for S = 224, 64
  crop_draws.pt  torchvision RandomResizedCrop.get_params draws (top, left, height, width) for
                 images of H x W: draws.HxW, int64 [N, 4]
  augment.pt     image (uint8 [3, 40, 48]), ops, magnitudes and out.K: torchvision's TrivialAugmentWide
                 operation ops[K] at magnitudes[K] applied to image (nearest, no fill); space.K: the
                 magnitudes operation K draws from
  erase_draws.pt torchvision RandomErasing.get_params draws (top, left, height, width; the whole
                 image where ten tries found no box) at its default scale and ratio: draws.HxW
  imagenet/      an ImageNet devkit in small (scipy.io.savemat's meta.mat, 5 synsets; 6 validation
                 images' ground truth): devkit/ (compressed meta.mat), devkit.tar.gz (uncompressed),
                 truth.txt; left out where scipy is missing (the test then skips)
  archives/      good.tar.gz (a small CIFAR-10 binary release), dotdot.tar.gz (an entry
                 '../escape.txt'), absolute.tar.gz ('/tmp/...'), corrupt.tar.gz (cut short)
"""
import argparse, hashlib, io, os, sys, tarfile
import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

ap = argparse.ArgumentParser()
ap.add_argument('--out', required=True)
ap.add_argument('--draws', type=int, default=20000)
a = ap.parse_args()
out = a.out
stamp = hashlib.sha256(open(__file__, 'rb').read()).hexdigest() + f' {a.draws}'
if os.path.exists(os.path.join(out, 'stamp')) and open(os.path.join(out, 'stamp')).read() == stamp:
    print('data fixtures are up to date in', out)
    sys.exit(0)
rng = np.random.default_rng(0)


def smooth_image(h, w):
    # a smooth picture with some detail, like a photograph; pure noise is a harsher test of
    # JPEG than of anything we do
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 100 * np.sin(x / 3.0 + c) * np.cos(y / 5.0 - c) for c in range(3)], -1)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def save(img, rel, **kw):
    path = os.path.join(out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, **kw)
    return rel


expected = {}


def add(img, rel, **kw):
    save(img, rel, **kw)
    with Image.open(os.path.join(out, rel)) as back:
        expected[rel] = torch.from_numpy(np.array(back.convert('RGB'))).permute(2, 0, 1).contiguous()


for split, n in (('train', 3), ('test', 1)):
    for k in range(n):
        add(Image.fromarray(smooth_image(32, 32)), f'folder/{split}/bird/{k}.jpg', quality=90)
        add(Image.fromarray(smooth_image(32, 32)), f'folder/{split}/cat/{k}.PNG')
        add(Image.fromarray(smooth_image(48, 64)[:, :, 0]), f'folder/{split}/dog/grey{k}.jpeg', quality=95)
add(Image.fromarray(smooth_image(40, 30)).convert('RGBA'), 'folder/train/cat/rgba.png')
add(Image.fromarray(smooth_image(20, 24)[:, :, 1]), 'folder/train/dog/grey.png')
add(Image.fromarray(smooth_image(16, 16)).convert('P'), 'folder/train/bird/palette.png')
add(Image.fromarray(smooth_image(36, 28)).convert('CMYK'), 'kinds/cmyk.jpg', quality=90)
cmyk = Image.fromarray(np.concatenate([smooth_image(24, 40), smooth_image(24, 40)[:, :, :1]], -1), 'CMYK')
add(cmyk, 'kinds/cmyk_black.jpg', quality=85)
add(Image.fromarray(smooth_image(40, 44)), 'kinds/progressive.jpg', quality=90, progressive=True)
add(Image.fromarray(smooth_image(20, 30)), 'kinds/png.JPEG', format='PNG')
save(Image.fromarray(smooth_image(300, 400)), 'draft/big.jpg', quality=90)
drafts = {}
for div in (2, 4):
    with Image.open(os.path.join(out, 'draft/big.jpg')) as im:
        im.draft('RGB', (400 // div, 300 // div))
        drafts[f'draft.{div}'] = torch.from_numpy(np.array(im.convert('RGB'))).permute(2, 0, 1).contiguous()
torch.save(drafts, os.path.join(out, 'draft/draft.pt'))
for sub, (h, w) in ((0, (97, 131)), (1, (160, 240)), (2, (61, 45)), (2, (200, 150))):
    add(Image.fromarray(smooth_image(h, w)), f'gpu/train/a/s{sub}_{h}x{w}.JPEG', quality=90, subsampling=sub)
add(Image.fromarray(smooth_image(50, 70)), 'gpu/train/b/progressive.JPEG', quality=90, progressive=True)
add(Image.fromarray(smooth_image(33, 47)[:, :, 0]), 'gpu/train/b/grey.JPEG', quality=90)
add(Image.fromarray(smooth_image(36, 28)).convert('CMYK'), 'gpu/train/b/cmyk.JPEG', quality=90)
add(Image.fromarray(smooth_image(20, 30)), 'gpu/train/b/png.JPEG', format='PNG')
with open(os.path.join(out, 'folder/train/bird/notes.txt'), 'w') as f:
    f.write('not an image, and not named like one: ignored\n')

good = save(Image.fromarray(smooth_image(32, 32)), 'bad/train/b/ok.jpg')
buf = io.BytesIO()
Image.fromarray(smooth_image(32, 32)).save(buf, format='JPEG', quality=90)
os.makedirs(os.path.join(out, 'bad/train/a'), exist_ok=True)
open(os.path.join(out, 'bad/train/a/truncated.jpg'), 'wb').write(buf.getvalue()[: len(buf.getvalue()) // 2])
open(os.path.join(out, 'bad/train/a/text.jpg'), 'w').write('hello, I am not a JPEG\n')
save(Image.fromarray(smooth_image(32, 32)), 'bad/train/a/fine.jpg')
save(Image.fromarray(smooth_image(32, 32)), 'empty_class/train/a/x.jpg')
os.makedirs(os.path.join(out, 'empty_class/train/b'), exist_ok=True)
torch.save(expected, os.path.join(out, 'expected.pt'))

# --- transforms -------------------------------------------------------------------------------
norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
blob = {}
shapes = [(32, 32)] * 4 + [(40, 30), (30, 50), (300, 200)]
for k, (h, w) in enumerate(shapes):
    img = smooth_image(h, w)
    blob[f'image.{k}'] = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    for s in (224, 64):
        tf = T.Compose([T.Resize(256 * s // 224), T.CenterCrop(s), T.ToTensor(), norm])
        blob[f'test.{s}.{k}'] = tf(Image.fromarray(img))
torch.save(blob, os.path.join(out, 'transforms.pt'))

draws = {}
torch.manual_seed(0)
for h, w in ((32, 32), (20, 50), (224, 160)):
    img = torch.zeros(3, h, w)
    rows = [T.RandomResizedCrop.get_params(img, scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3]) for _ in range(a.draws)]
    draws[f'draws.{h}x{w}'] = torch.tensor(rows, dtype=torch.long)
torch.save(draws, os.path.join(out, 'crop_draws.pt'))

draws = {}
for h, w in ((32, 32), (224, 224)):
    img = torch.zeros(3, h, w)
    rows = [T.RandomErasing.get_params(img, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=[0])[:4] for _ in range(a.draws)]
    draws[f'draws.{h}x{w}'] = torch.tensor(rows, dtype=torch.long)
torch.save(draws, os.path.join(out, 'erase_draws.pt'))

# TrivialAugmentWide's operations (torchvision's _apply_op, on uint8 tensors, nearest, no fill):
# case K is operation ops[K] (its index in the augmentation space) at magnitudes[K], on image.
from torchvision.transforms import InterpolationMode
from torchvision.transforms.autoaugment import _apply_op
space = list(T.TrivialAugmentWide()._augmentation_space(31).keys())
cases = [('Identity', 0.0), ('ShearX', 0.33), ('ShearX', -0.66), ('ShearY', 0.495), ('TranslateX', 7.0),
         ('TranslateX', -12.0), ('TranslateY', 5.0), ('Rotate', 31.5), ('Rotate', -103.5), ('Brightness', 0.495),
         ('Brightness', -0.396), ('Color', 0.66), ('Color', -0.924), ('Contrast', 0.528), ('Contrast', -0.495),
         ('Sharpness', 0.924), ('Sharpness', -0.924), ('Posterize', 3.0), ('Posterize', 6.0), ('Solarize', 127.5),
         ('Solarize', 42.5), ('AutoContrast', 0.0), ('Equalize', 0.0)]
augment = {'image': torch.from_numpy(smooth_image(40, 48)).permute(2, 0, 1).contiguous()}
augment['image'][1] = augment['image'][1] // 3 + 60  # a channel of a narrow range (autocontrast, equalize)
augment['ops'] = torch.tensor([space.index(op) for op, _ in cases], dtype=torch.long)
augment['magnitudes'] = torch.tensor([m for _, m in cases], dtype=torch.float64)
for k, (op, m) in enumerate(cases):
    augment[f'out.{k}'] = _apply_op(augment['image'], op, m, interpolation=InterpolationMode.NEAREST, fill=None)
for k, (magnitudes, _) in enumerate(T.TrivialAugmentWide()._augmentation_space(31).values()):
    augment[f'space.{k}'] = magnitudes.reshape(-1).to(torch.float64)  # (one 0 where it has no magnitude)
torch.save(augment, os.path.join(out, 'augment.pt'))

# --- archives ---------------------------------------------------------------------------------
arch = os.path.join(out, 'archives')
os.makedirs(arch, exist_ok=True)


def cifar_files(records=7):
    files = {'batches.meta.txt': ('\n'.join(['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
                                             'horse', 'ship', 'truck']) + '\n').encode()}
    for name in [f'data_batch_{i}.bin' for i in range(1, 6)] + ['test_batch.bin']:
        labels = rng.integers(0, 10, records, dtype=np.uint8)
        pixels = rng.integers(0, 256, (records, 3072), dtype=np.uint8)
        files[name] = np.concatenate([labels[:, None], pixels], 1).tobytes()
    return files


def write_tar(path, entries):
    with tarfile.open(path, 'w:gz') as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


write_tar(os.path.join(arch, 'good.tar.gz'), {f'cifar-10-batches-bin/{k}': v for k, v in cifar_files().items()})
write_tar(os.path.join(arch, 'dotdot.tar.gz'), {'cifar-10-batches-bin/readme.html': b'hi', '../escape.txt': b'escaped'})
write_tar(os.path.join(arch, 'absolute.tar.gz'), {'/tmp/resnet-absolute-entry.txt': b'escaped'})
data = open(os.path.join(arch, 'good.tar.gz'), 'rb').read()
open(os.path.join(arch, 'corrupt.tar.gz'), 'wb').write(data[: len(data) // 2])
try:
    from scipy.io import savemat
except ImportError:
    savemat = None
if savemat is not None:
    fields = ['ILSVRC2012_ID', 'WNID', 'words', 'gloss', 'num_children', 'children', 'wordnet_height',
              'num_train_images']
    synsets = np.zeros((5, 1), dtype=[(f, 'O') for f in fields])
    wnids = ['n02119789', 'n01440764', 'n04592741', 'n09999999', 'n00001740']
    for i, wnid in enumerate(wnids):
        leaf = i < 4
        synsets[i, 0] = (np.array([[float(i + 1)]]), wnid, f'words {i}', f'gloss {i}', np.array([[0.0 if leaf else 2.0]]),
                         np.zeros((1, 0)) if leaf else np.array([[1.0, 2.0]]), np.array([[0.0]]),
                         np.array([[1300.0 if leaf else 0.0]]))
    truth = b'2\n1\n3\n1\n2\n4\n'
    for compress, where in ((True, 'imagenet/devkit/ILSVRC2012_devkit_t12/data'), (False, 'imagenet/plain/data')):
        os.makedirs(os.path.join(out, where), exist_ok=True)
        savemat(os.path.join(out, where, 'meta.mat'), {'synsets': synsets}, do_compression=compress)
        open(os.path.join(out, where, 'ILSVRC2012_validation_ground_truth.txt'), 'wb').write(truth)
    plain = os.path.join(out, 'imagenet/plain/data')
    write_tar(os.path.join(out, 'imagenet/devkit.tar.gz'),
              {f'ILSVRC2012_devkit_t12/data/{f}': open(os.path.join(plain, f), 'rb').read()
               for f in ('meta.mat', 'ILSVRC2012_validation_ground_truth.txt')})
open(os.path.join(out, 'stamp'), 'w').write(stamp)
print('data fixtures written to', out)
