"""Data-parallel training on the CPU with Gloo (issue 11's CI part): 2 processes with --sync-bn and
batch B/2 each against 1 process with batch B, replicas staying identical, a killed or stopped
rank ending the job within --dist-timeout, the launcher stopping the others, and the launcher
variables' errors."""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

from harness import check, finish, resnet_and_sample

args, resnet = resnet_and_sample()
tmp = tempfile.mkdtemp(prefix='resnet-dist-')
# One thread per process: float sums in one order, and two processes on a small machine.
env1 = dict(os.environ, OMP_NUM_THREADS='1')
for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE',
          'PMI_SIZE'):
    env1.pop(k, None)


def run(*flags, env=env1, timeout=900):
    r = subprocess.run([args.resnet, *flags], capture_output=True, text=True, timeout=timeout, env=env)
    return r.returncode, r.stdout + r.stderr


def losses(out):
    return [float(m) for m in re.findall(r'^loss: ([0-9.]+)', out, re.M)]


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


common = ['train', '--model', 'resnet18', '--data', args.sample, '--device', 'cpu', '--log-every', '1']

# --- 2 processes x batch 8 with --sync-bn against 1 process x batch 16 ---------------------------
# The same global batches (each process reads every second image of the epoch's permutation),
# crops drawn per image, batch-norm statistics over both processes, gradients averaged: the same
# losses. With a zero learning rate (data, sharding and the synchronised batch norm's forward pass)
# all 10 steps agree within 1e-5 relative; training (the averaged gradients too) after one update
# within 3e-4. Later steps drift apart: ResNet at initialisation amplifies float rounding step by
# step, by how much depends on the CPU's kernels (one update moves the loss by 2.4% here, and
# the rounding of 16 images' gradient summed as 2 x 8 moves the next loss by 3.5e-5 on an AMD EPYC
# and under 1e-5 on the machine of 2026-11-28; the step after by 3.5e-3 on the EPYC). A wrong
# average (a sum, or local statistics in the batch norm's backward) moves it by percents.
def compare(lr, steps, tol, what):
    flags = [*common, '--image-size', '64', '--max-steps', str(steps), '--epochs', '1', '--lr', lr]
    code1, out1 = run(*flags, '--batch-size', '16', '--checkpoint-dir', f'{tmp}/one-{lr}')
    code2, out2 = run(*flags, '--batch-size', '8', '--nproc-per-node', '2', '--sync-bn',
                      '--checkpoint-dir', f'{tmp}/two-{lr}')
    check(code1 == 0 and code2 == 0, f'both runs finish (exit {code1}, {code2})' +
          ('' if code2 == 0 else ': ' + out2[-800:]))
    l1, l2 = losses(out1), losses(out2)
    gap = max((abs(a - b) / abs(a) for a, b in zip(l1, l2)), default=1.0)
    check(len(l1) == steps and len(l2) == steps and gap <= tol,
          f'{what}: 2 processes x 8 (--sync-bn) give 1 process x 16\'s losses step by step within {tol:g}: '
          f'{l1} vs {l2}, max rel gap {gap:.1e}')
    return out2


compare('0', 10, 1e-5, 'learning rate 0')
out2 = compare('0.001', 2, 3e-4, 'training')
check('2 processes (Gloo, torchrun), batch 8 each, 16 in all, synchronised batch norm' in out2,
      'the run says how it is spread')
check(out2.count('Epoch 1') == 1, 'only rank 0 prints (one "Epoch 1")')
m = re.search(r'Replicas agree: parameter checksum (\S+) on all 2 processes', out2)
check(m is not None, 'the processes end with identical weights (checksum check): ' + (m.group(0) if m else out2[-300:]))
check(os.path.exists(f'{tmp}/two-0.001/resnet18/resume.pt'), 'rank 0 wrote resume.pt')

# Evaluation over the whole test split, summed across the processes: with a zero learning rate the
# weights stay as they start, and an epoch's test line equals the single process's.
flat = ['--image-size', '32', '--epochs', '1', '--lr', '0']
code1, out1 = run(*common, *flat, '--batch-size', '8', '--checkpoint-dir', f'{tmp}/eval1')
code2, out2 = run(*common, *flat, '--batch-size', '4', '--nproc-per-node', '2', '--sync-bn',
                  '--checkpoint-dir', f'{tmp}/eval2')
t1 = re.search(r'Accuracy: ([0-9.]+)%, Avg loss: ([0-9.]+)', out1)
t2 = re.search(r'Accuracy: ([0-9.]+)%, Avg loss: ([0-9.]+)', out2)
check(code1 == 0 and code2 == 0 and t1 and t2 and t1.group(1) == t2.group(1) and
      abs(float(t1.group(2)) - float(t2.group(2))) <= 1e-4 * float(t1.group(2)),
      'test accuracy and loss over the whole split, across 2 processes, equal 1 process\'s: ' +
      (f'{t1.group(0)} vs {t2.group(0)}' if t1 and t2 else out2[-400:]))

# --- torchrun, whose agent serves the store (TORCHELASTIC_USE_AGENT_STORE=True) -------------------
import sys
r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc-per-node', '2',
                    '--no-python', args.resnet, *common, '--image-size', '32', '--batch-size', '4', '--max-steps', '4',
                    '--epochs', '1', '--checkpoint-dir', f'{tmp}/torchrun'],
                   capture_output=True, text=True, timeout=600, env=env1)
out = r.stdout + r.stderr
check(r.returncode == 0 and '2 processes (Gloo, torchrun)' in out and 'Replicas agree' in out,
      f'torchrun --nproc-per-node 2 $(which resnet) train works (exit {r.returncode}): ' + out.strip()[-300:])

# --- resuming with another number of processes --------------------------------------------------
code, out = run(*common, '--image-size', '32', '--epochs', '1', '--batch-size', '4', '--nproc-per-node', '2',
                '--max-steps', '5', '--checkpoint-dir', f'{tmp}/resume')
code, out = run(*common, '--image-size', '32', '--epochs', '1', '--batch-size', '4', '--max-steps', '12',
                '--checkpoint-dir', f'{tmp}/resume')
check(code == 0 and 'was written by 2 process(es), this run has 1: epoch 1 goes on after 40 of its images' in out,
      'a run of 2 processes resumes in 1, at the same image of the epoch: ' + out[-300:])

# --- a rank that dies or hangs ------------------------------------------------------------------
def two_ranks(timeout_s, what):
    port = free_port()
    flags = [*common, '--image-size', '32', '--epochs', '3', '--batch-size', '4', '--dist-timeout', str(timeout_s),
             '--checkpoint-dir', f'{tmp}/{what}']
    procs, logs = [], []
    for rank in range(2):
        env = dict(env1, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2', MASTER_ADDR='127.0.0.1',
                   MASTER_PORT=str(port))
        log = open(f'{tmp}/{what}-{rank}.log', 'w+')
        procs.append(subprocess.Popen([args.resnet, *flags], stdout=log, stderr=subprocess.STDOUT, env=env))
        logs.append(log)
    deadline = time.time() + 120
    while time.time() < deadline and 'loss:' not in open(logs[0].name).read():
        time.sleep(0.2)
    return procs, logs


for sig, what in ((signal.SIGKILL, 'killed'), (signal.SIGSTOP, 'stopped')):
    procs, logs = two_ranks(10, what)
    procs[1].send_signal(sig)
    start = time.time()
    try:
        code = procs[0].wait(timeout=40)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        code = None
    waited = time.time() - start
    procs[1].kill()
    procs[1].wait()
    text = open(logs[0].name).read()
    check(code not in (0, None) and waited <= 10 + 15 and 'error: rank 0 of 2:' in text,
          f'rank 1 {what}: rank 0 exits (code {code}) after {waited:.1f} s (--dist-timeout 10) with: ' +
          (text.strip().splitlines() or [''])[-1][:200])

# The launcher: one child killed, the others stopped, a non-zero exit naming the rank. Its
# children share the cores (OMP_NUM_THREADS, where the caller set none).
env_cores = {k: v for k, v in env1.items() if k != 'OMP_NUM_THREADS'}
launcher = subprocess.Popen([args.resnet, *common, '--image-size', '32', '--epochs', '3', '--batch-size', '4',
                             '--nproc-per-node', '2', '--checkpoint-dir', f'{tmp}/launcher'],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_cores)
children = []
deadline = time.time() + 120
while time.time() < deadline and len(children) < 2:
    children = subprocess.run(['pgrep', '-P', str(launcher.pid)], capture_output=True, text=True).stdout.split()
    time.sleep(0.2)
time.sleep(3)
threads = [dict(v.split('=', 1) for v in open(f'/proc/{c}/environ').read().split('\0') if '=' in v).get('OMP_NUM_THREADS')
           for c in children]
cores = len(os.sched_getaffinity(0))
check(threads == [str(max(1, cores // 2))] * 2,
      f'--nproc-per-node 2 gives each process half the {cores} cores it may use: OMP_NUM_THREADS {threads}')
os.kill(int(children[-1]), signal.SIGKILL)
try:
    out, _ = launcher.communicate(timeout=60)
except subprocess.TimeoutExpired:
    launcher.kill()
    out, _ = launcher.communicate()
alive = [c for c in children if os.path.exists(f'/proc/{c}') and
         open(f'/proc/{c}/stat').read().split()[2] != 'Z']
check(launcher.returncode not in (0, None) and 'was killed by signal 9; stopping the other processes' in out
      and not alive, f'--nproc-per-node: a killed rank stops the job (exit {launcher.returncode}, left running: {alive})')

# --- the launchers' variables -------------------------------------------------------------------
for extra, want in (({'WORLD_SIZE': '2', 'RANK': '0'}, 'needs MASTER_ADDR and MASTER_PORT'),
                    ({'WORLD_SIZE': '2', 'RANK': '2', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': '1'},
                     'RANK = 2 is not below WORLD_SIZE = 2'),
                    ({'WORLD_SIZE': 'two', 'RANK': '0'}, 'environment variable WORLD_SIZE must be a whole number'),
                    ({'SLURM_NTASKS': '2', 'SLURM_PROCID': '0'}, '(Slurm) needs MASTER_ADDR and MASTER_PORT')):
    code, out = run(*common, '--checkpoint-dir', f'{tmp}/env', env=dict(env1, **extra))
    check(code == 2 and want in out, f'{extra}: exit 2 with "{want}" (got {code}: {out.strip()[-160:]})')
code, out = run(*common, '--nproc-per-node', '2', '--checkpoint-dir', f'{tmp}/env',
                env=dict(env1, WORLD_SIZE='2', RANK='0', MASTER_ADDR='127.0.0.1', MASTER_PORT='1'))
check(code == 2 and '--nproc-per-node starts the processes itself' in out, '--nproc-per-node under torchrun is refused')
finish()
