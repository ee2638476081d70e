"""Every message that names a flag names one that exists, and one the command that printed it
accepts (issue 10). Two walks:
- static: every `--flag` written in a string of the sources (src/**/*.cpp, *.h) is a flag of
  some command (as `resnet COMMAND --help` lists them), so no message points at a flag that was
  renamed or never existed;
- per command: a table of bad invocations, one or more for each message that suggests a flag;
  each must fail (exit 1 or 2) and every `--flag` its output names must be one that command
  accepts, except inside a quoted command line (`resnet train --save-model`), whose flags must
  be that command's.
Run by CTest: test_flag_messages.py --resnet build/resnet --source . --sample assets/cifar10-sample"""
import argparse, glob, os, re, tempfile
from harness import check, finish, run as run_program

ap = argparse.ArgumentParser()
ap.add_argument('--resnet', required=True)
ap.add_argument('--source', required=True)
ap.add_argument('--sample', required=True)
a = ap.parse_args()

FLAG = re.compile(r'(?<![\w-])--[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*')
COMMANDS = ['data', 'train', 'test', 'predict', 'bench', 'export', 'plot']


def run(*args):
    return run_program(a.resnet, *args)


accepted = {}
for command in COMMANDS:
    rc, out = run(command, '--help')
    accepted[command] = set(FLAG.findall(out))
    check(rc == 0 and len(accepted[command]) >= 5, f'{command} --help lists its flags ({len(accepted[command])})')
every = set().union(*accepted.values()) | {'--help', '--version'}

# Static: flags named in the sources' string literals.
named = {}
for path in glob.glob(os.path.join(a.source, 'src', '**', '*.[ch]*'), recursive=True):
    for literal in re.findall(r'"((?:[^"\\\n]|\\.)*)"', open(path, encoding='utf-8').read()):
        for flag in FLAG.findall(literal):
            named.setdefault(flag, set()).add(os.path.relpath(path, a.source))
unknown = {f: sorted(p) for f, p in named.items() if f not in every}
check(len(named) > 30 and not unknown, f'the {len(named)} flags the sources name all exist; unknown: {unknown}')

tmp = tempfile.mkdtemp()
missing_dir = os.path.join(tmp, 'nothing')
image = os.path.join(a.sample, 'test', 'cat', '0000.jpg')
text = os.path.join(tmp, 'text.pth')
open(text, 'w').write('not a model\n')
CASES = [
    ('data', '--archive', os.path.join(tmp, 'none.tar.gz'), '--data', missing_dir),
    ('data', '--retries', '-1'),
    ('train', '--data', missing_dir, '--device', 'cpu'),
    ('train', '--epochs', '0', '--device', 'cpu'),
    ('train', '--batch-size', '0'),
    ('train', '--image-size', '8'),
    ('train', '--log-every', '0'),
    ('train', '--lr', '-1'),
    ('train', '--momentum', 'nan'),
    ('train', '--amp', 'fp8'),
    ('train', '--amp', 'fp16', '--device', 'cpu'),
    ('train', '--cuda-graphs', 'on', '--device', 'cpu'),
    ('train', '--channels-last', 'yes'),
    ('train', '--fused', 'on', '--device', 'cpu'),
    ('train', '--trace', 'maybe'),
    ('train', '--resume', os.path.join(missing_dir, 'resume.pt')),
    ('train', '--freeze-backbone'),
    ('train', '--model', 'squeezenet1_1', '--zero-init-residual', '--data', a.sample, '--device', 'cpu',
     '--checkpoint-dir', tmp),
    ('train', '--model', 'resnet18', '--zero-init-residual', '--weights', text, '--data', a.sample, '--device', 'cpu',
     '--checkpoint-dir', tmp),
    ('train', '--weights', text, '--data', a.sample, '--device', 'cpu', '--checkpoint-dir', tmp),
    ('train', '--bach-size', '3'),
    ('test', '--data', a.sample, '--checkpoint-dir', missing_dir),
    ('test', '--data', missing_dir),
    ('test', '--weights', text, '--data', a.sample),
    ('test', '--classes', text),
    ('predict', '--image', image, '--checkpoint-dir', missing_dir),
    ('predict', '--image', os.path.join(tmp, 'none.jpg'), '--weights', text),
    ('predict', '--image', image, '--weights', os.path.join(tmp, 'none.pth')),
    ('predict', '--image', image, '--image-size', '64'),
    ('predict', '--image', tmp),
    ('bench', '--steps', '0'),
    ('bench', '--model', 'resnet51'),
    ('bench', '--device', 'dml'),
    ('bench', '--cuda-graphs', 'on', '--device', 'cpu'),
    ('bench', '--fused', 'maybe'),
    ('export', '--output', os.path.join(tmp, 'x.onnx'), '--checkpoint-dir', missing_dir),
    ('export', '--output', os.path.join(tmp, 'x.onnx'), '--weights', text),
    ('export', '--output', os.path.join(tmp, 'x.onnx'), '--format', 'tflite'),
    ('export', '--format', 'onnx'),
    ('plot', '--checkpoint-dir', missing_dir),
]
# Cases whose message must also say this (the check of that flag, not a later failure).
SAYS = {
    ('train', '--tta-shift', '-2'): '--tta-shift must be at least 0 (got -2)',
    ('train', '--tta-shift', '32', '--image-size', '32', '--data', a.sample, '--device', 'cpu'):
        '--tta-shift must be below the image size (32 px; got 32)',
    ('test', '--tta-shift', '-1'): '--tta-shift must be at least 0 (got -1)',
    ('test', '--holdout', '-1'): '--holdout must be at least 0 (got -1)',
    ('train', '--mixup-off-epoch', '-1', '--mixup', '0.2'): '--mixup-off-epoch must be at least 0 (got -1)',
    ('train', '--mixup-off-epoch', '3'): '--mixup-off-epoch 3: there is no Mixup or CutMix to turn off',
}
CASES += list(SAYS)
QUOTED = re.compile(r'`resnet (\w+)([^`]*)`')  # a command line in a message: its flags are its command's
for case in CASES:
    command = case[0]
    rc, out = run(*case)
    wrong = []
    for other, rest in QUOTED.findall(out):
        wrong += [f for f in FLAG.findall(rest) if f not in accepted.get(other, set())]
    flags = set(FLAG.findall(QUOTED.sub('', out))) - set(case)  # what the message brings up, beyond what was typed
    wrong = sorted(set(wrong) | (flags - accepted[command]))
    check(rc in (1, 2) and not wrong and SAYS.get(case, '') in out,
          f'resnet {" ".join(case)}: exit {rc}; flags named: {sorted(flags)}; not {command}\'s: {wrong} -- {out.strip()[:160]!r}')
finish()
