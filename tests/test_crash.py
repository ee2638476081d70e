"""Crash test: start `resnet train`, kill it with SIGKILL at a random moment (0 to 2 s after it
wrote its first checkpoint), five times, starting it again each time. Every restart resumes (when a resume.pt was written), no checkpoint is ever
unreadable (Python's torch.load opens every resume.pt and checkpoint.pth after each kill), no
temporary file is mistaken for a checkpoint, and the run ends with the configured epochs, each
in metrics.csv exactly once, with the same weights and momentum, bit for bit, as a run never
killed.
Run by CTest: test_crash.py --resnet build/resnet --sample assets/cifar10-sample
Longer (docs/RELIABILITY.md): --kills 20 --epochs 8"""
import argparse, os, random, shutil, signal, subprocess, tempfile, time
from harness import check, finish
import torch

ap = argparse.ArgumentParser()
ap.add_argument('--resnet', required=True)
ap.add_argument('--sample', required=True)
ap.add_argument('--kills', type=int, default=5)
ap.add_argument('--seed', type=int, default=None)
# 10 steps an epoch: enough steps that every killed run gets through a checkpoint and more remain
ap.add_argument('--epochs', type=int, default=4)
a = ap.parse_args()
seed = a.seed if a.seed is not None else random.randrange(1 << 30)
rng = random.Random(seed)
print('random seed', seed, flush=True)

EPOCHS = a.epochs  # 4: 40 steps, more than five short-lived runs get through (about 0.6 s a step here)
tmp = tempfile.mkdtemp()
d = os.path.join(tmp, 'ck', 'resnet18')
cmd = [a.resnet, 'train', '--model', 'resnet18', '--data', a.sample, '--image-size', '32', '--batch-size', '100',
       '--device', 'cpu', '--epochs', str(EPOCHS), '--checkpoint-every', '3', '--save-model',
       '--checkpoint-dir', os.path.join(tmp, 'ck')]
try:
    for kill in range(a.kills):
        had_resume = os.path.exists(os.path.join(d, 'resume.pt'))
        log = open(os.path.join(tmp, f'log{kill}'), 'w+')
        resume = os.path.join(d, 'resume.pt')
        before = os.stat(resume).st_mtime_ns if os.path.exists(resume) else None
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        # Kill at a random moment after this run has written a checkpoint of its own, so that
        # every run makes progress however slow the machine: within the next 2 s the run may be
        # training, testing, or in the middle of writing a file.
        deadline = time.time() + 600
        while time.time() < deadline and p.poll() is None:
            if os.path.exists(resume) and os.stat(resume).st_mtime_ns != before:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.0))
        if p.poll() is not None:
            check(False, f'run {kill} ended before it was killed (exit {p.returncode})')
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        log.seek(0)
        out = log.read()
        if had_resume:
            check('Resuming from epoch' in out, f'run {kill} resumed: {out.splitlines()[:1]}')
        for name in ('resume.pt', 'checkpoint.pth'):
            path = os.path.join(d, name)
            if os.path.exists(path):
                try:
                    obj = torch.load(path)
                    check(len(obj) > 0, f'after kill {kill}: {name} opens ({len(obj)} entries)')
                except Exception as e:
                    check(False, f'after kill {kill}: {name} unreadable: {e}')
        print(f'kill {kill}: step {torch.load(os.path.join(d, "resume.pt"))["step"] if os.path.exists(os.path.join(d, "resume.pt")) else "-"}', flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    check(r.returncode == 0, 'the last run finishes: ' + r.stdout[-300:] + r.stderr[-300:])
    check('Resuming from epoch' in r.stdout, 'the last run resumed')
    final = torch.load(os.path.join(d, 'resume.pt'))
    check(final['epoch'] == EPOCHS and final['step'] == EPOCHS * 10, f'ended at epoch {final["epoch"]}, step {final["step"]}')
    rows = open(os.path.join(d, 'metrics.csv')).read().splitlines()[1:]
    check([r.split(',')[0] for r in rows] == [str(e) for e in range(1, EPOCHS + 1)], f'each epoch once in metrics.csv: {rows}')
    # The same run never killed: the same weights and momentum buffers, bit for bit.
    ref_dir = os.path.join(tmp, 'unbroken')
    ref_cmd = [ref_dir if c == os.path.join(tmp, 'ck') else c for c in cmd]
    r = subprocess.run(ref_cmd, capture_output=True, text=True, timeout=900)
    check(r.returncode == 0, 'the unbroken run finishes: ' + r.stdout[-300:] + r.stderr[-300:])
    ref = torch.load(os.path.join(ref_dir, 'resnet18', 'resume.pt'))
    keys = [k for k in ref if k.startswith('model.') or k.startswith('momentum.')]
    differ = [k for k in keys if not torch.equal(ref[k], final[k])]
    check(len(keys) > 100 and not differ,
          f'after {a.kills} kills the weights equal the unbroken run\'s ({len(keys)} tensors; differ: {differ[:5]})')
finally:
    shutil.rmtree(tmp)
print('random seed', seed)
finish()
