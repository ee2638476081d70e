"""Weights from Python into `resnet`, on the CPU (issue 10):
- torchvision's resnet18, resnet50 and squeezenet1_1 (random weights, 1,000 classes) saved by
  torch.save in both formats (zip, and the legacy one of torchvision's published weights):
  `resnet predict --weights FILE` (architecture guessed from the names and shapes) prints the five
  classes, with ImageNet's names, and the probabilities torchvision gives with the same
  preprocessing (Resize(256) + CenterCrop(224), bilinear, ImageNet normalisation), within 1e-5;
- round trip: a checkpoint `resnet train` wrote -> torch.load -> torch.save in both formats ->
  `resnet test --weights` and `predict --weights` print what they print for the checkpoint;
- fine-tuning: `train --weights` (architecture from the weights) replaces a 1,000-class
  classifier for the sample's 10 classes; with --freeze-backbone every other weight stays as it
  was in the file, bit for bit, without it every one trains;
- export: resnet18, resnet50, resnext50_32x4d and squeezenet1_1 to ONNX pass onnx.checker and
  give torchvision's logits in onnxruntime (batch 1 and 8, within 1e-4 relative); --format
  torchvision writes a state dict torchvision loads strictly;
- bad input: another architecture (`--model` given: the error lists missing keys and wrong
  shapes), a truncated file, a file that is no PyTorch file, a pickle asking for os.system, a class list of the wrong length,
  `--classes` without `--weights`: exit code 1 (2 for the flag), one line naming the file.
Run by CTest: test_interop.py --resnet build/resnet --sample assets/cifar10-sample"""
import os, re, shutil, tempfile
from harness import check, finish, resnet_and_sample, test_transform
import torch, torchvision

a, run = resnet_and_sample()


def top5_lines(out):
    """'great white shark 0.0123' lines -> [(name, p)]; names may hold spaces."""
    lines = [l.rsplit(' ', 1) for l in out.strip().splitlines()]
    return [(n, float(p)) for n, p in lines if len(lines) == 5]


tmp = tempfile.mkdtemp()
try:
    image = os.path.join(a.sample, 'test', 'ship', sorted(os.listdir(os.path.join(a.sample, 'test', 'ship')))[0])
    x = test_transform(image, 224)
    names = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta['categories']
    for arch in ('resnet18', 'resnet50', 'squeezenet1_1'):
        torch.manual_seed(1)
        model = getattr(torchvision.models, arch)().eval()  # 1,000 classes
        with torch.no_grad():
            probs = torch.softmax(model(x), 1)[0]
        want = [(names[i], probs[i].item()) for i in probs.topk(5).indices.tolist()]
        for legacy in (False, True):
            what = f'{arch} ({"legacy" if legacy else "zip"} format)'
            path = os.path.join(tmp, f'{arch}-{int(legacy)}.pth')
            torch.save(model.state_dict(), path, _use_new_zipfile_serialization=not legacy)
            rc, out = run('predict', '--weights', path, '--image', image, '--device', 'cpu')
            got = top5_lines(out)
            check(rc == 0 and [n for n, _ in got] == [n for n, _ in want],
                  f'{what}: predict --weights prints torchvision\'s five ImageNet classes: {out.strip()!r} vs {want}')
            if got:
                worst = max(abs(p - q) for (_, p), (_, q) in zip(got, want))
                check(worst < 1e-5, f'{what}: the same probabilities (max diff {worst:.1e})')

    # --classes names them; a list of the wrong length is refused, naming the file.
    path = os.path.join(tmp, 'resnet18-0.pth')
    classes = os.path.join(tmp, 'classes.txt')
    open(classes, 'w').write(''.join(f'thing {i}\n' for i in range(1000)))
    rc, out = run('predict', '--weights', path, '--classes', classes, '--image', image, '--device', 'cpu')
    check(rc == 0 and re.match(r'thing \d+ 0\.\d+', out), f'--classes names the classes: {out[:60]!r}')
    open(classes, 'w').write('cat\ndog\n')
    rc, out = run('predict', '--weights', path, '--classes', classes, '--image', image, '--device', 'cpu')
    check(rc == 1 and f'{classes}: holds 2 class names, but the model has 1000 classes' in out,
          f'a class list of the wrong length: {out.strip()!r}')
    rc, out = run('predict', '--classes', classes, '--image', image, '--device', 'cpu')
    check(rc == 2 and '--classes requires --weights' in out, f'--classes alone: {out.strip()!r}')

    # Bad files: another architecture, truncated, not PyTorch at all.
    rc, out = run('predict', '--weights', path, '--model', 'resnet50', '--image', image, '--device', 'cpu')
    check(rc == 1 and 'does not match the model' in out and 'missing keys' in out and 'shape mismatches' in out,
          f'resnet18 weights as resnet50: missing keys and shapes listed: {out.strip()[:200]!r}')
    for name, data in (('cut.pth', open(os.path.join(tmp, 'resnet18-1.pth'), 'rb').read()[:5000]),
                       ('cut-zip.pth', open(path, 'rb').read()[:5000]),
                       ('text.pth', b'not a model\n')):
        bad = os.path.join(tmp, name)
        open(bad, 'wb').write(data)
        rc, out = run('predict', '--weights', bad, '--image', image, '--device', 'cpu')
        check(rc == 1 and out.startswith('error: ' + bad + ': ') and len(out.strip().splitlines()) == 1,
              f'{name}: exit 1 and one line naming the file: {out.strip()!r}')

    # A pickle that would run a command when unpickled: refused (exit 1, naming the class), not run.
    class Payload:
        def __reduce__(self):
            return (os.system, ('touch ' + os.path.join(tmp, 'ran'),))
    for legacy in (False, True):
        evil = os.path.join(tmp, f'evil-{int(legacy)}.pth')
        torch.save({'fc.weight': torch.zeros(2, 2), 'x': Payload()}, evil, _use_new_zipfile_serialization=not legacy)
        rc, out = run('predict', '--weights', evil, '--image', image, '--device', 'cpu')
        check(rc == 1 and 'cannot rebuild posix.system' in out and not os.path.exists(os.path.join(tmp, 'ran')),
              f'a pickle asking for os.system ({"legacy" if legacy else "zip"}): refused, never run: {out.strip()!r}')

    # Round trip: our checkpoint -> Python -> both formats -> `resnet test --weights`.
    ck = os.path.join(tmp, 'ck')
    rc, out = run('train', '--model', 'resnet18', '--data', a.sample, '--image-size', '32', '--batch-size', '100',
                  '--device', 'cpu', '--epochs', '1', '--save-model', '--checkpoint-dir', ck)
    check(rc == 0, 'train exits 0')
    common = ['--data', a.sample, '--device', 'cpu', '--batch-size', '100']
    rc, out = run('test', '--model', 'resnet18', '--checkpoint-dir', ck, *common)
    line = re.search(r'Accuracy: .*', out)
    check(rc == 0 and line is not None, 'test of the checkpoint runs')
    rc, want = run('predict', '--model', 'resnet18', '--checkpoint-dir', ck, '--image', image, '--device', 'cpu')
    sd = torch.load(os.path.join(ck, 'resnet18', 'checkpoint.pth'))
    cifar = os.path.join(tmp, 'cifar.txt')
    open(cifar, 'w').write('\n'.join(sorted(os.listdir(os.path.join(a.sample, 'test')))) + '\n')
    for legacy in (False, True):
        fmt = 'legacy' if legacy else 'zip'
        again = os.path.join(tmp, f'again-{int(legacy)}.pth')
        torch.save(sd, again, _use_new_zipfile_serialization=not legacy)
        # A bare state dict holds neither the image size nor the class names: given here.
        rc, out2 = run('test', '--weights', again, '--image-size', '32', *common)
        check(rc == 0 and re.search(r'Accuracy: .*', out2).group(0) == line.group(0),
              f'test --weights ({fmt}, names from the data) gives what test of the checkpoint gave: {line.group(0)!r}')
        rc, got = run('predict', '--weights', again, '--image-size', '32', '--classes', cifar, '--image', image,
                      '--device', 'cpu')
        check(rc == 0 and got == want, f'predict --weights ({fmt}) prints what predict of the checkpoint printed')

    # Fine-tuning: torchvision's resnet18 shape (1,000 classes, legacy format) on the 10-class
    # sample; the architecture comes from the weights (no --model).
    src = os.path.join(tmp, 'resnet18-1.pth')
    orig = torch.load(src)
    for freeze in (True, False):
        ft = os.path.join(tmp, f'ft{int(freeze)}')
        rc, out = run('train', '--weights', src, '--data', a.sample, '--image-size', '32', '--batch-size', '100',
                      '--device', 'cpu', '--epochs', '1', '--save-model', '--checkpoint-dir', ft,
                      *(['--freeze-backbone'] if freeze else []))
        check(rc == 0 and 'Training resnet18' in out and
              'its classifier is replaced by a new one (1000 classes in the file, 10 in the data)' in out,
              f'train --weights{" --freeze-backbone" if freeze else ""}: resnet18, a new classifier: {out[:300]!r}')
        got = torch.load(os.path.join(ft, 'resnet18', 'checkpoint.pth'))
        weights = [k for k in orig if not k.startswith('fc.') and 'running' not in k and 'num_batches' not in k]
        unchanged = [k for k in weights if torch.equal(got[k], orig[k])]
        check(tuple(got['fc.weight'].shape) == (10, 512), 'the classifier has 10 outputs')
        if freeze:
            check(len(unchanged) == len(weights), f'--freeze-backbone: every backbone weight as in the file '
                  f'({len(unchanged)} of {len(weights)})')
        else:
            check(len(unchanged) == 0, f'without it every backbone weight trained ({len(unchanged)} unchanged)')
    # Export: ONNX (checker, then onnxruntime against torchvision at batch 1 and 8) and torchvision.
    rc, out = run('export', '--weights', os.path.join(tmp, 'resnet18-0.pth'), '--output', os.path.join(tmp, 'x.onnx'))
    if 'cannot write ONNX files' in out:
        check(rc == 2, 'this build has no ONNX writer, and export says what to install (ONNX checks skipped)')
    else:
        import numpy as np, onnx, onnxruntime
        for arch in ('resnet18', 'resnet50', 'resnext50_32x4d', 'squeezenet1_1'):
            torch.manual_seed(2)
            model = getattr(torchvision.models, arch)().eval()
            if arch.startswith('res'):  # running statistics that are not 0 and 1
                for m in model.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.uniform_(-0.5, 0.5)
                        m.running_var.uniform_(0.5, 2.0)
            weights = os.path.join(tmp, f'{arch}.pth')
            torch.save(model.state_dict(), weights)
            path = os.path.join(tmp, f'{arch}.onnx')
            rc, out = run('export', '--weights', weights, '--format', 'onnx', '--output', path)
            check(rc == 0 and os.path.isfile(path), f'export {arch} to ONNX: {out.strip()[:120]!r}')
            if rc != 0:
                continue
            onnx.checker.check_model(onnx.load(path), full_check=True)
            session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
            for batch in (1, 8):
                x = torch.randn(batch, 3, 224, 224)
                got = session.run(['logits'], {'images': x.numpy()})[0]
                with torch.no_grad():
                    want = model(x).numpy()
                gap = float(np.linalg.norm(got - want) / np.linalg.norm(want))
                check(got.shape == (batch, 1000) and gap < 1e-4,
                      f'{arch} ONNX, batch {batch}: onnxruntime gives torchvision\'s logits (relative {gap:.1e})')
    sd_path = os.path.join(tmp, 'plain.pth')
    rc, out = run('export', '--model', 'resnet18', '--checkpoint-dir', ck, '--format', 'torchvision', '--output', sd_path)
    if rc == 0:
        plain = torchvision.models.resnet18(num_classes=10)
        plain.load_state_dict(torch.load(sd_path), strict=True)
    check(rc == 0, f'export --format torchvision writes a state dict torchvision loads strictly: {out.strip()[:120]!r}')
    rc, out = run('export', '--weights', sd_path, '--format', 'tflite', '--output', sd_path)
    check(rc == 2 and "--format takes onnx or torchvision (got 'tflite')" in out, f'an unknown format: {out.strip()!r}')

    rc, out = run('train', '--freeze-backbone', '--data', a.sample, '--device', 'cpu')
    check(rc == 2 and '--freeze-backbone requires --weights' in out, f'--freeze-backbone alone: {out.strip()!r}')
finally:
    shutil.rmtree(tmp, ignore_errors=True)
finish()
