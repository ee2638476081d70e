"""Issue 13's four bad inputs, as regression tests: a decompression-bomb PNG, a learning rate that
makes the loss NaN, an image size whose batch cannot fit in memory, and a folder given as an
image."""
import os
import re
import struct
import tempfile
import time
import zlib

import torch

from harness import check, finish, resnet_and_sample

args, run = resnet_and_sample()
tmp = tempfile.mkdtemp(prefix='resnet-reliability-')


def png(path, width, height):
    """A valid all-black 8-bit grey PNG, written row by row (30,000 x 30,000 compresses to < 1 MB)."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    c = zlib.compressobj(9)
    row = b'\x00' * (width + 1)
    body = b''.join(c.compress(row) for _ in range(height)) + c.flush()
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)) +
                chunk(b'IDAT', body) + chunk(b'IEND', b''))


ck = f'{tmp}/ck'
code, out = run('train', '--model', 'resnet18', '--data', args.sample, '--device', 'cpu', '--image-size', '32',
                '--epochs', '1', '--save-model', '--checkpoint-dir', ck)
check(code == 0, 'a model to predict with: ' + out[-200:])
use = ['--checkpoint-dir', ck, '--model', 'resnet18', '--device', 'cpu']

# 1. A 30,000 x 30,000 PNG of under 1 MB: refused from its header, at once, naming the flag.
bomb = f'{tmp}/bomb.png'
png(bomb, 30000, 30000)
start = time.time()
code, out = run('predict', *use, '--image', bomb)
took = time.time() - start
check(os.path.getsize(bomb) < 1 << 20 and code == 1 and
      f'{bomb}: 30000 x 30000 = 900000000 pixels, more than the limit of 178956970 (--max-image-pixels' in out
      and took < 20,
      f'a decompression bomb ({os.path.getsize(bomb)} bytes) is refused in {took:.1f} s: {out.strip()[-200:]}')
small = f'{tmp}/small.png'
png(small, 64, 48)
code, out = run('predict', *use, '--image', small)
check(code == 0, 'a 64 x 48 PNG passes the default limit')
code, out = run('predict', *use, '--image', small, '--max-image-pixels', '3000')
check(code == 1 and '64 x 48 = 3072 pixels, more than the limit of 3000' in out, '--max-image-pixels 3000 refuses it: ' + out.strip()[-160:])
code, out = run('predict', *use, '--image', small, '--max-image-pixels', '-1')
check(code == 2 and '--max-image-pixels must be at least 0' in out, '--max-image-pixels -1: ' + out.strip()[-120:])

# 2. --lr 1e12: the loss turns NaN; training stops with exit 1, naming epoch, step and the last
# good resume.pt, which still holds finite weights.
nan_dir = f'{tmp}/nan'
code, out = run('train', '--model', 'resnet18', '--data', args.sample, '--device', 'cpu', '--image-size', '32',
                '--epochs', '1', '--lr', '1e12', '--checkpoint-every', '1', '--log-every', '5',
                '--checkpoint-dir', nan_dir)
last = out.strip().splitlines()[-1] if out.strip() else ''
check(code == 1 and last.startswith('error: the training loss is NaN at epoch 1, step ') and '--learning-rate 1e+12' in last
      and 'resume.pt still holds step' in last, f'a NaN loss stops training (exit {code}): {last[:220]}')
saved = torch.load(f'{nan_dir}/resnet18/resume.pt', weights_only=False)
finite = all(torch.isfinite(v).all() for k, v in saved.items() if k.startswith('model.') and v.is_floating_point())
check(finite and saved['step'] >= 1, f"resume.pt holds step {saved['step']} with finite weights")

# 2b. --skip-nonfinite 3: steps with a non-finite loss are skipped, three of them; the fourth stops
# the run with a message that says so.
code, out = run('train', '--model', 'resnet18', '--data', args.sample, '--device', 'cpu', '--image-size', '32',
                '--epochs', '1', '--lr', '1e12', '--skip-nonfinite', '3', '--log-every', '1',
                '--checkpoint-dir', f'{tmp}/skip')
last = out.strip().splitlines()[-1] if out.strip() else ''
check(code == 1 and 'the training loss or gradients were not finite in 4 steps, more than --skip-nonfinite 3 allows' in last,
      f'--skip-nonfinite 3 stops at the fourth non-finite loss (exit {code}): {last[:220]}')
check("3 of the run's steps so far had a loss or gradients that were not finite; their updates were skipped" in out,
      'the skipped steps are said as they happen')

# 3. An image size whose batch cannot fit: a message with the flag and the size, before any work.
code, out = run('train', '--model', 'resnet18', '--data', args.sample, '--device', 'cpu', '--image-size', '100000',
                '--checkpoint-dir', f'{tmp}/big')
check(code == 2 and out.strip().startswith('error: --image-size 100000 with --batch-size 32: one batch of input images '
                                           'alone takes 3840.0 GB') and 'enforce fail' not in out,
      '--image-size 100000: ' + out.strip()[:200])

# 4. A folder given as --image: every image in it, or a message when it holds none.
empty = f'{tmp}/empty'
os.makedirs(empty)
code, out = run('predict', *use, '--image', empty)
check(code == 1 and f'{empty}: a folder with no .jpg, .jpeg or .png file in it (--image)' in out and
      'basic_filebuf' not in out, 'an empty folder as --image: ' + out.strip()[-160:])
# 5. A full disk and a read-only checkpoint folder (tmpfs mounts in a private mount namespace;
# skipped where none can be made): one line naming the file or folder, and the resume.pt written
# before the disk filled still whole and loadable.
import shutil
import subprocess

if shutil.which('unshare') and subprocess.run(['unshare', '-m', 'true'], capture_output=True).returncode == 0:
    train = (f'{args.resnet} train --model resnet18 --data {args.sample} --device cpu --image-size 32 --epochs 1 '
             '--log-every 100')
    script = f'''
mkdir -p {tmp}/full {tmp}/ro
mount -t tmpfs -o size=140m tmpfs {tmp}/full || exit 77
mount -t tmpfs -o ro,size=1m tmpfs {tmp}/ro || exit 77
{train} --checkpoint-every 2 --max-steps 6 --checkpoint-dir {tmp}/full/ck > {tmp}/full.log 2>&1; echo $? > {tmp}/full.code
cp {tmp}/full/ck/resnet18/resume.pt {tmp}/full-resume.pt; ls {tmp}/full/ck/resnet18 > {tmp}/full.ls
{train} --max-steps 2 --checkpoint-dir {tmp}/ro/ck > {tmp}/ro.log 2>&1; echo $? > {tmp}/ro.code
'''
    r = subprocess.run(['unshare', '-m', 'sh', '-c', script], capture_output=True, text=True, timeout=600)
    if r.returncode == 77:
        print('skip the disk tests: no tmpfs mount here')
    else:
        full = open(f'{tmp}/full.log').read().strip().splitlines()[-1]
        saved = torch.load(f'{tmp}/full-resume.pt', weights_only=False)
        check(open(f'{tmp}/full.code').read().strip() == '1' and 'write failed (disk full?): No space left on device' in full
              and 'resume.pt is unchanged' in full and saved['step'] == 2 and
              [f for f in open(f'{tmp}/full.ls').read().split() if not f.startswith('events.out.tfevents.')] ==
              ['resume.pt'],
              f'disk full at the second checkpoint: exit 1, resume.pt of step {saved["step"]} intact, no temporary '
              f'file left: {full[:200]}')
        ro = open(f'{tmp}/ro.log').read().strip().splitlines()[-1]
        check(open(f'{tmp}/ro.code').read().strip() == '1' and
              ro == f'error: {tmp}/ro/ck/resnet18: cannot make the checkpoint folder (--checkpoint-dir): Read-only file system',
              'a read-only checkpoint folder: ' + ro)
else:
    print('skip the disk tests: no mount namespace here')

# 6. SIGINT / SIGTERM during training: resume.pt at the next step boundary, exit 130 / 143 with a
# line saying how to resume, and the same command resumes there. With --nproc-per-node, SIGTERM
# to the launcher reaches every process; they agree on a step and stop there.
import signal


def interrupt(sig, extra, name):
    ck_dir = f'{tmp}/{name}'
    log = open(f'{tmp}/{name}.log', 'w+')
    cmd = [args.resnet, 'train', '--model', 'resnet18', '--data', args.sample, '--device', 'cpu', '--image-size', '32',
           '--epochs', '3', '--log-every', '1', '--checkpoint-dir', ck_dir, *extra]
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS='1'))
    deadline = time.time() + 120
    while time.time() < deadline and open(log.name).read().count('loss:') < 4:
        time.sleep(0.1)
    p.send_signal(sig)
    start = time.time()
    try:
        code = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        code = None
    text = open(log.name).read()
    return code, time.time() - start, text, ck_dir, cmd


for sig, want, name in ((signal.SIGINT, 130, 'SIGINT'), (signal.SIGTERM, 143, 'SIGTERM')):
    code, took, text, ck_dir, cmd = interrupt(sig, [], name)
    m = re.search(r'interrupted \(' + name + r'\) at epoch 1, step (\d+); (\S+) holds the run: the same command resumes it',
                  text)
    saved = torch.load(f'{ck_dir}/resnet18/resume.pt', weights_only=False) if m else {}
    check(code == want and m is not None and saved.get('step') == int(m.group(1)) and took < 30,
          f'{name}: exit {code} after {took:.1f} s, resume.pt at step {saved.get("step")}: ' + text.strip()[-160:])
    r = subprocess.run(cmd[:cmd.index('--epochs') + 1] + ['1'] + cmd[cmd.index('--epochs') + 2:] + ['--max-steps', str(saved.get('step', 0) + 1)],
                       capture_output=True, text=True, timeout=300)
    check(r.returncode == 0 and f'Resuming from epoch 1, step {saved.get("step")}' in r.stdout + r.stderr,
          f'{name}: the same command resumes at that step')

code, took, text, ck_dir, cmd = interrupt(signal.SIGTERM, ['--nproc-per-node', '2', '--batch-size', '8'], 'launcher')
check(code == 143 and text.count('interrupted (SIGTERM)') == 1 and os.path.exists(f'{ck_dir}/resnet18/resume.pt'),
      f'--nproc-per-node 2 and SIGTERM: every process stops at one step, exit {code}: ' + text.strip()[-200:])
finish()
