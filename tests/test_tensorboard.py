"""TensorBoard event files from `resnet train` read back with TensorBoard's own EventAccumulator
(issue 14): every scalar with the values train printed; a run stopped and resumed, and one resumed
again from an older resume.pt (its later steps logged twice across files), shows each step once;
--logdir moves the files, --logdir '' writes none. On the CPU, resnet18 on the embedded sample.
Run by CTest: test_tensorboard.py --resnet build/resnet --sample assets/cifar10-sample"""
import csv, glob, os, re, shutil, sys, tempfile
from harness import check, finish, resnet_and_sample

a, run = resnet_and_sample()
try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:
    print('skip: no tensorboard package (scripts/install-deps installs it)')
    sys.exit(77)

common = ['--model', 'resnet18', '--data', a.sample, '--image-size', '32', '--batch-size', '100', '--device', 'cpu',
          '--epochs', '2', '--log-every', '3', '--seed', '1']


def printed_losses(out):
    return [float(x) for x in re.findall(r'^loss: (\d+\.\d+)', out, re.M)]


def scalars(folder):
    acc = EventAccumulator(folder, size_guidance={'scalars': 0, 'tensors': 0})
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}


def close(x, y):
    return abs(x - y) <= 1e-6 * max(1.0, abs(y))  # float32 in the file


tmp = tempfile.mkdtemp()
try:
    ck = os.path.join(tmp, 'ck')
    d = os.path.join(ck, 'resnet18')
    rc, out = run('train', *common, '--checkpoint-dir', ck, '--logdir', os.path.join(tmp, 'x'), '--max-steps', '1')
    if 'writes no TensorBoard files' in out:
        print('skip: this build writes no TensorBoard files: ' + out.strip())
        sys.exit(77)
    shutil.rmtree(ck, ignore_errors=True)

    # A: stopped after 15 steps (10 an epoch: steps 1-10, then 11-15); B: on to the end; C: resumed
    # again from A's resume.pt, so its steps 16-20 were logged by B already.
    rc, out_a = run('train', *common, '--checkpoint-dir', ck, '--max-steps', '15')
    check(rc == 0 and 'TensorBoard: ' + d in out_a and 'tensorboard --logdir ' + d in out_a,
          'train says where its event file is and how to watch it: ' + out_a[-300:])
    shutil.copy(os.path.join(d, 'resume.pt'), os.path.join(tmp, 'resume-15.pt'))
    rc, out_b = run('train', *common, '--checkpoint-dir', ck)
    check(rc == 0 and 'Resuming from epoch 2' in out_b, 'B resumes A: ' + out_b[-300:])
    shutil.copy(os.path.join(tmp, 'resume-15.pt'), os.path.join(d, 'resume.pt'))
    rc, out_c = run('train', *common, '--checkpoint-dir', ck)
    check(rc == 0 and 'Resuming from epoch 2' in out_c, 'C resumes from A\'s resume.pt again: ' + out_c[-300:])
    files = glob.glob(os.path.join(d, 'events.out.tfevents.*'))
    check(len(files) == 3, f'one event file a run: {files}')

    acc, s = scalars(d)
    for tag in ('train/loss', 'train/learning_rate', 'train/img_per_s', 'epoch/train_loss', 'epoch/test_loss',
                'epoch/top1', 'epoch/top5', 'epoch/learning_rate', 'epoch/img_per_s', 'epoch/elapsed_s', 'epoch/epoch'):
        check(tag in s, f'{tag} is in the event files')
    steps = [step for step, _ in s.get('train/loss', [])]
    check(steps == [1, 4, 7, 10, 11, 14, 17, 20], f'train/loss at each logged step once, C\'s replacing B\'s: {steps}')
    # The losses train printed: A's (steps 1-14), then C's (17, 20).
    want = printed_losses(out_a) + printed_losses(out_c)
    got = [v for _, v in s.get('train/loss', [])]
    check(len(got) == len(want) and all(close(x, y) for x, y in zip(got, want)),
          f'train/loss holds the printed losses: {got} against {want}')
    check(all(close(v, 0.001) for _, v in s.get('train/learning_rate', [])), 'train/learning_rate is the sample\'s 0.001')
    check([step for step, _ in s.get('epoch/top1', [])] == [10, 20], 'epoch scalars at each epoch\'s last step, once')

    # Per epoch: metrics.csv's values (what train printed, at its precision).
    rows = list(csv.DictReader(open(os.path.join(d, 'metrics.csv'))))
    last = {int(r['epoch']): r for r in rows}
    for (step, epoch) in ((10, 1), (20, 2)):
        r = last.get(epoch, {})
        for tag, column in (('epoch/top1', 'top1'), ('epoch/top5', 'top5'), ('epoch/test_loss', 'test_loss'),
                            ('epoch/train_loss', 'train_loss'), ('epoch/epoch', 'epoch')):
            value = dict(s.get(tag, [])).get(step)
            check(value is not None and column in r and abs(value - float(r[column])) <= 1e-4 * max(1, abs(value)),
                  f'{tag} of epoch {epoch} = metrics.csv\'s {column}: {value} against {r.get(column)}')
    test_loss_c = re.findall(r'Avg loss: (\d+\.\d+)', out_c)
    check(test_loss_c and close(dict(s['epoch/test_loss'])[20], float(test_loss_c[-1])),
          'the last epoch\'s test loss is what C printed')
    settings = acc.Tensors('settings') if 'settings' in acc.Tags()['tensors'] else []
    text = settings[0].tensor_proto.string_val[0].decode() if settings else ''
    check(len(settings) == 1 and '"model": "resnet18"' in text and '"batch_size": 100' in text,
          f'the run\'s settings once, as text: {text[:200]}')

    # On a GPU: the peak memory the caching allocator handed out, at every logged step and epoch end.
    import torch
    if torch.cuda.is_available():
        gpu = os.path.join(tmp, 'gpu')
        on_gpu = [f if f != 'cpu' else 'cuda' for f in common]
        on_gpu[on_gpu.index('--epochs') + 1] = '1'
        rc, out = run('train', *on_gpu, '--checkpoint-dir', gpu)
        ran = rc == 0 and os.path.isdir(os.path.join(gpu, 'resnet18'))
        check(ran, f'train on CUDA (exit {rc}): {out[-800:]}')
        _, s3 = scalars(os.path.join(gpu, 'resnet18')) if ran else (None, {})
        check(rc == 0 and len(s3.get('train/peak_gpu_memory_mib', [])) == 4 and
              all(v > 1 for _, v in s3.get('train/peak_gpu_memory_mib', []) + s3.get('epoch/peak_gpu_memory_mib', [])) and
              len(s3.get('epoch/peak_gpu_memory_mib', [])) == 1, f'peak GPU memory logged on CUDA: {s3.get("epoch/peak_gpu_memory_mib")}')
    else:
        print('skip the GPU part: no CUDA GPU visible')

    # --logdir elsewhere; --logdir '' none.
    other = os.path.join(tmp, 'tb')
    rc, out = run('train', *common, '--checkpoint-dir', os.path.join(tmp, 'ck2'), '--logdir', other, '--max-steps', '4')
    check(rc == 0 and len(glob.glob(os.path.join(other, 'events.out.tfevents.*'))) == 1 and
          not glob.glob(os.path.join(tmp, 'ck2', 'resnet18', 'events.*')), '--logdir DIR puts the file in DIR only')
    _, s2 = scalars(other)
    check([step for step, _ in s2.get('train/loss', [])] == [1, 4], f'and it holds that run: {s2.get("train/loss")}')
    rc, out = run('train', *common, '--checkpoint-dir', os.path.join(tmp, 'ck3'), '--logdir', '', '--max-steps', '2')
    check(rc == 0 and not glob.glob(os.path.join(tmp, 'ck3', 'resnet18', 'events.*')) and 'TensorBoard:' not in out,
          "--logdir '' writes no event file")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
finish()
