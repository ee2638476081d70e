"""The sample's workflow end to end on the embedded CIFAR-10 sample, on the CPU, at 32 pixels:
train 2 epochs of resnet18 -> checkpoint.pth, resume.pt, metrics.csv -> `test` prints the
accuracy block -> `predict` prints 5 classes -> Python's torch.load + torchvision's
load_state_dict(strict=True) of checkpoint.pth gives the probabilities `resnet predict` printed.
Then: a run stopped mid-epoch (--max-steps) and resumed ends with the same weights, bit for bit,
as one that was never stopped; --recipe, --holdout, fine-tuning with an average.
Run by CTest: test_workflow.py --resnet build/resnet --sample assets/cifar10-sample"""
import json, os, re, shutil, tempfile
from harness import check, finish, resnet_and_sample, test_transform
import torch, torchvision
from PIL import Image

a, run = resnet_and_sample()


SIZE, BATCH = 32, 100
common = ['--model', 'resnet18', '--data', a.sample, '--image-size', str(SIZE), '--batch-size', str(BATCH),
          '--device', 'cpu']
tmp = tempfile.mkdtemp()
try:
    ck = os.path.join(tmp, 'ck')
    rc, out = run('train', *common, '--epochs', '2', '--save_model', '--checkpoint-dir', ck)
    print(out)
    check(rc == 0, 'train exits 0')
    for line in ('Epoch 1\n-------------------------------\nloss: ', 'Epoch 2\n', '[    0/ 1000]',
                 'current highest_accuracy:  ', 'Test Error: \n Accuracy: '):
        check(line in out, f'the log has {line!r}')
    check(re.search(r'Accuracy: \d+\.\d%, Avg loss: \d\.\d{6} \n', out) is not None, 'the Test Error line reads as the sample\'s')
    d = os.path.join(ck, 'resnet18')
    for f in ('checkpoint.pth', 'checkpoint.json', 'resume.pt', 'metrics.csv'):
        check(os.path.isfile(os.path.join(d, f)), f'{f} exists')
    rows = open(os.path.join(d, 'metrics.csv')).read().splitlines()
    check(rows[0] == 'epoch,train_loss,test_loss,top1,top5,img_per_s,seconds,learning_rate,elapsed_s' and len(rows) == 3,
          f'metrics.csv has a header and 2 rows: {rows}')
    elapsed = [float(r.split(',')[8]) for r in rows[1:]]
    seconds = [float(r.split(',')[6]) for r in rows[1:]]
    check(elapsed[0] >= seconds[0] and elapsed[1] >= elapsed[0] + seconds[1],
          f'elapsed_s is the wall time since the start, each epoch\'s training time in it: {rows}')

    rc, out = run('test', '--model', 'resnet18', '--checkpoint-dir', ck, '--data', a.sample, '--device', 'cpu')
    check(rc == 0 and 'Test Error: \n Accuracy: ' in out and 'Top-5 accuracy' in out and 'Accuracy per class' in out,
          'test prints the accuracy block: ' + out)

    rc, out = run('test', '--model', 'resnet18', '--checkpoint-dir', ck, '--data', a.sample, '--device', 'cpu',
                  '--confusion')
    confusion = os.path.join(d, 'confusion.csv')
    check(rc == 0 and 'Confusion matrix (rows: true class' in out and confusion in out and os.path.isfile(confusion),
          'test --confusion prints the matrix and says where its CSV is: ' + out[-400:])
    if os.path.isfile(confusion):
        table = [r.split(',') for r in open(confusion).read().splitlines()]
        counts = [[int(x) for x in r[1:]] for r in table[1:]]
        accuracy = float(re.search(r'Accuracy: (\d+\.\d)%', out).group(1))
        total = sum(map(sum, counts))
        right = sum(counts[i][i] for i in range(len(counts)))
        classes = sorted(os.listdir(os.path.join(a.sample, 'test')))
        check(table[0] == ['true\\predicted'] + classes and [r[0] for r in table[1:]] == classes and
              total == 200 and abs(100.0 * right / total - accuracy) <= 0.05 + 1e-9 and
              all(sum(r) == 20 for r in counts),
              f'confusion.csv: classes by name, 20 test images a class, its diagonal the accuracy printed '
              f'({right}/{total} against {accuracy}%)')

    # The confusion matrix's PNG: each cell shaded by its share of its row (plot/chart.h's geometry:
    # 60-pixel cells from (150, 150) for 10 classes; red = 255 * (1 - 0.88 * share)).
    png = os.path.join(d, 'confusion.png')
    check('Confusion matrix (PNG): ' + png in out and os.path.isfile(png), 'test --confusion writes confusion.png')
    if os.path.isfile(png) and os.path.isfile(confusion):
        image = Image.open(png).convert('RGB')
        worst = max(abs(image.getpixel((150 + 60 * p + 6, 150 + 60 * t + 6))[0] -
                        255 * (1 - 0.88 * counts[t][p] / max(1, sum(counts[t]))))
                    for t in range(10) for p in range(10))
        check(image.size == (150 + 600 + 30, 150 + 600 + 60) and worst <= 2.5,
              f'confusion.png: {image.size}, each cell shaded by its row share (worst {worst:.1f} of 255 off)')

    # resnet plot: the run's curves from metrics.csv (4 panels with elapsed_s, 2 without), and the
    # errors of a file that is not train's.
    rc, out = run('plot', '--checkpoint-dir', ck, '--model', 'resnet18')
    curves = os.path.join(d, 'curves.png')
    check(rc == 0 and curves in out and os.path.isfile(curves), 'resnet plot writes curves.png beside metrics.csv: ' + out)
    if os.path.isfile(curves):
        image = Image.open(curves).convert('RGB')
        pixels = list(image.getdata())
        near = lambda c: sum(1 for q in pixels if sum(abs(q[i] - c[i]) for i in range(3)) < 30)
        check(image.size == (1200, 800) and near((31, 120, 181)) > 200 and near((255, 127, 13)) > 200,
              f'curves.png: 2x2 panels of 600x400, the first and second series drawn ({image.size})')
    old_csv = os.path.join(tmp, 'old.csv')
    with open(old_csv, 'w') as f:  # without elapsed_s (an older run's file): the epoch panels only
        f.write('epoch,train_loss,test_loss,top1,top5\n1,2.0,1.9,0.3,0.8\n2,1.5,1.4,0.5,0.9\n')
    rc, out = run('plot', '--metrics', old_csv, '--output', os.path.join(tmp, 'old.png'))
    check(rc == 0 and Image.open(os.path.join(tmp, 'old.png')).size == (1200, 400), 'an older metrics.csv: 2 panels')
    with open(old_csv, 'w') as f:
        f.write('epoch,train_loss,top1\n1,2.0,0.3\n')
    rc, out = run('plot', '--metrics', old_csv)
    check(rc == 1 and out.strip() == f'error: {old_csv}: no column test_loss (is it train\'s metrics.csv?)', out)
    with open(old_csv, 'w') as f:
        f.write('epoch,train_loss,test_loss,top1,top5\n1,2.0,abc,0.3,0.8\n')
    rc, out = run('plot', '--metrics', old_csv)
    check(rc == 1 and "line 2: test_loss = 'abc' is not a number" in out, out)

    rc, out = run('test', '--model', 'resnet18', '--checkpoint-dir', ck, '--data', a.sample, '--device', 'cpu',
                  '--trace', 'True')
    trace = os.path.join(d, 'trace-test.json')
    check(rc == 0 and re.search(r'Name +# calls +CPU total', out) and 'aten::' in out and trace in out,
          'test --trace True prints the operator table and the trace path: ' + out[:300])
    check(os.path.isfile(trace) and len(json.load(open(trace))) > 100, 'the Chrome trace is JSON with events')

    image = os.path.join(a.sample, 'test', 'cat', '0000.jpg')
    rc, out = run('predict', '--model', 'resnet18', '--checkpoint-dir', ck, '--image', image, '--device', 'cpu')
    lines = [l.split() for l in out.strip().splitlines()]
    check(rc == 0 and len(lines) == 5 and all(len(l) == 2 for l in lines), 'predict prints 5 "<class> <p>" lines: ' + out)
    ours = {name: float(p) for name, p in lines}

    # Python: plain torch.load (weights_only=True) and torchvision, strict.
    model = torchvision.models.resnet18(num_classes=10)
    model.load_state_dict(torch.load(os.path.join(d, 'checkpoint.pth')), strict=True)
    model.eval()
    x = test_transform(image, SIZE)  # Resize(36) + CenterCrop(32) at 32 px
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)[0]
    classes = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
    worst = max(abs(probs[classes.index(n)].item() - p) for n, p in ours.items())
    best_python = classes[probs.argmax().item()]
    check(worst < 2e-5 and best_python == lines[0][0],
          f'torchvision with checkpoint.pth gives the probabilities resnet printed (max diff {worst:.2e})')

    # Resume: stopped at step 13 (mid epoch 2), resumed, against never stopped: same bits.
    a_dir, b_dir = os.path.join(tmp, 'a'), os.path.join(tmp, 'b')
    rc_a, out_a = run('train', *common, '--epochs', '2', '--checkpoint-dir', a_dir, '--trace')  # tracing changes no number
    a_trace = os.path.join(a_dir, 'resnet18', 'trace.json')
    check(re.search(r'Name +# calls +CPU total', out_a) and 'Chrome trace' in out_a and
          len(json.load(open(a_trace))) > 100, 'train --trace prints the table and writes the trace')
    rc_b1, out_b1 = run('train', *common, '--epochs', '2', '--checkpoint-dir', b_dir, '--max-steps', '13')
    rc_b2, out_b2 = run('train', *common, '--epochs', '2', '--checkpoint-dir', b_dir)
    check(rc_a == 0 and rc_b1 == 0 and rc_b2 == 0, 'three runs exit 0')
    check('Stopped after 13 steps' in out_b1, 'the first part stopped at step 13')
    check('Resuming from epoch 2, step 13' in out_b2, 'the second part resumed: ' + out_b2.splitlines()[0])
    ra = torch.load(os.path.join(a_dir, 'resnet18', 'resume.pt'))
    rb = torch.load(os.path.join(b_dir, 'resnet18', 'resume.pt'))
    keys = [k for k in ra if k.startswith('model.') or k.startswith('momentum.')]
    differ = [k for k in keys if not torch.equal(ra[k], rb[k])]
    check(len(keys) > 100 and not differ, f'resumed run equals the uninterrupted one bitwise ({len(keys)} tensors; differ: {differ[:5]})')
    check(ra['step'] == rb['step'] == 20 and ra['epoch'] == rb['epoch'] == 2, 'both stopped at epoch 2, step 20')
    ma = open(os.path.join(a_dir, 'resnet18', 'metrics.csv')).read().splitlines()
    mb = open(os.path.join(b_dir, 'resnet18', 'metrics.csv')).read().splitlines()
    check([r.split(',')[:5] for r in ma] == [r.split(',')[:5] for r in mb], f'same losses and accuracies in metrics.csv: {ma} {mb}')

    # A schedule (half an epoch of warm-up, then cosine) stopped at step 13 and resumed: the same
    # rates and the same bits as never stopped, and the rates PyTorch's schedulers give; with
    # Mixup and CutMix drawn from the saved generator, the gradients clipped, random erasing and
    # the residual blocks' last batch norms started at zero.
    sched = ['--lr', '0.05', '--lr-schedule', 'cosine', '--warmup-epochs', '0.5', '--min-lr', '0.0001',
             '--ema-decay', '0.9', '--mixup', '0.2', '--cutmix', '1.0', '--clip-grad-norm', '2',
             '--random-erase', '0.5', '--zero-init-residual']
    c_dir, d_dir = os.path.join(tmp, 'c'), os.path.join(tmp, 'd')
    rc_c, out_c = run('train', *common, *sched, '--epochs', '2', '--checkpoint-dir', c_dir)
    rc_d1, out_d1 = run('train', *common, *sched, '--epochs', '2', '--checkpoint-dir', d_dir, '--max-steps', '13')
    rc_d2, out_d2 = run('train', *common, *sched, '--epochs', '2', '--checkpoint-dir', d_dir)
    check(rc_c == 0 and rc_d1 == 0 and rc_d2 == 0, 'scheduled runs exit 0')
    check('Learning rate: cosine from 0.05 to 0.0001, after 0.5 warm-up epochs from 0.005' in out_c,
          'the schedule is said at the start: ' + next((l for l in out_c.splitlines() if 'Learning rate' in l), ''))
    rc_ = torch.load(os.path.join(c_dir, 'resnet18', 'resume.pt'))
    rd = torch.load(os.path.join(d_dir, 'resnet18', 'resume.pt'))
    ema_keys = [k for k in rc_ if k.startswith('ema.')]
    differ = [k for k in keys + ema_keys if not torch.equal(rc_[k], rd[k])]
    check(len(ema_keys) > 100 and not differ,
          f'the resumed scheduled run equals the unbroken one bitwise, its weights\' average too '
          f'({len(ema_keys)} ema tensors; differ: {differ[:5]})')
    moved = [k for k in ema_keys if rc_[k].is_floating_point() and not torch.equal(rc_[k], rc_['model.' + k[4:]])]
    check(len(moved) > 50, f'the average differs from the weights ({len(moved)} tensors)')
    lr_c = [float(r.split(',')[7]) for r in open(os.path.join(c_dir, 'resnet18', 'metrics.csv')).read().splitlines()[1:]]
    lr_d = [float(r.split(',')[7]) for r in open(os.path.join(d_dir, 'resnet18', 'metrics.csv')).read().splitlines()[1:]]
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(p, lr=0.05)
    steps = 10  # a 1,000-image sample in batches of 100
    sch = torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2 * steps - 5, eta_min=0.0001)], milestones=[5])
    torch_lr = []
    for _ in range(2 * steps):
        torch_lr.append(opt.param_groups[0]['lr'])
        opt.step()
        sch.step()
    want = [torch_lr[steps - 1], torch_lr[2 * steps - 1]]  # the rate of each epoch's last step
    check(lr_c == lr_d and all(abs(a - b) <= 1e-5 * b for a, b in zip(lr_c, want)),
          f'metrics.csv has the rates of PyTorch\'s LinearLR + CosineAnnealingLR: {lr_c} {lr_d} {want}')
    # --mixup-off-epoch 1: the second epoch trains on the batches as they are; a run stopped in it
    # (step 13) and resumed says so again and ends as the unbroken one, bit for bit.
    off = ['--mixup', '0.2', '--cutmix', '1.0', '--mixup-off-epoch', '1']
    mo_a_dir, mo_b_dir = os.path.join(tmp, 'mixoff-a'), os.path.join(tmp, 'mixoff-b')
    rc_mo_a, out_mo_a = run('train', *common, *off, '--epochs', '2', '--checkpoint-dir', mo_a_dir)
    rc_mo_b1, out_mo_b1 = run('train', *common, *off, '--epochs', '2', '--checkpoint-dir', mo_b_dir, '--max-steps', '13')
    rc_mo_b2, out_mo_b2 = run('train', *common, *off, '--epochs', '2', '--checkpoint-dir', mo_b_dir)
    said = 'Mixup and CutMix off (--mixup-off-epoch 1: from epoch 2 on)'
    check(rc_mo_a == 0 and rc_mo_b1 == 0 and rc_mo_b2 == 0, 'the --mixup-off-epoch runs exit 0: ' + out_mo_a[-300:])
    check(out_mo_a.count(said) == 1 and out_mo_a.index(said) > out_mo_a.index('Epoch 2') and said in out_mo_b1 and said in out_mo_b2,
          'the epoch where mixing stops says so, also in the resumed run: ' + out_mo_a[-600:])
    check('Mixup and CutMix in epochs 1-1, off from epoch 2 (--mixup-off-epoch)' in out_mo_a,
          'the start says when mixing stops: ' + out_mo_a[:600])
    mo_a = torch.load(os.path.join(mo_a_dir, 'resnet18', 'resume.pt'))
    mo_b = torch.load(os.path.join(mo_b_dir, 'resnet18', 'resume.pt'))
    differ = [k for k in keys if not torch.equal(mo_a[k], mo_b[k])]
    check(not differ, f'the resumed run with mixing turned off equals the unbroken one bitwise (differ: {differ[:5]})')
    rc_mo_all, out_mo_all = run('train', *common, '--mixup', '0.2', '--cutmix', '1.0', '--mixup-off-epoch', '2',
                                '--epochs', '2', '--checkpoint-dir', os.path.join(tmp, 'mixoff-all'))
    check('Mixup and CutMix to the end: --mixup-off-epoch 2 is not below --epochs 2' in out_mo_all and
          'Mixup and CutMix off' not in out_mo_all, 'an off epoch at the end says mixing runs to the end: ' + out_mo_all[:600])
    mo_all = torch.load(os.path.join(tmp, 'mixoff-all', 'resnet18', 'resume.pt'))
    check(rc_mo_all == 0 and any(not torch.equal(mo_a[k], mo_all[k]) for k in keys if k.startswith('model.')),
          'mixing to the end trains other weights than mixing only in the first epoch')
    # --recipe fast: its settings where the command line gives none, the command line's where it does.
    r_dir = os.path.join(tmp, 'recipe')
    rc_r, out_r = run('train', *common, '--recipe', 'fast', '--amp', 'off', '--epochs', '1', '--max-steps', '2',
                      '--checkpoint-dir', r_dir)
    check(rc_r == 0, 'a --recipe fast run exits 0: ' + out_r[-300:])
    check('Recipe fast: --amp fp16 --batch-size 256 --epochs 135 --lr 0.4' in out_r,
          'the recipe is said: ' + next((l for l in out_r.splitlines() if 'Recipe' in l), ''))
    check('Learning rate: cosine from 0.4 to 0, after 2 warm-up epochs from 0.04' in out_r,
          'the recipe\'s schedule is said: ' + next((l for l in out_r.splitlines() if 'Learning rate' in l), ''))
    settings = torch.load(os.path.join(r_dir, 'resnet18', 'resume.pt'))['settings']
    if isinstance(settings, str):
        settings = json.loads(settings)
    want = {'label_smoothing': 0.1, 'nesterov': True, 'no_decay_bn_bias': True, 'ema_decay': 0.0,
            'weight_decay': 5e-4, 'crop_pad': 4, 'test_crop_pct': 1.0, 'random_erase': 0.25, 'mixup': 0.2,
            'zero_init_residual': True, 'tta_flip': True, 'eval_every': 10, 'amp': 'off', 'epochs': 1}
    got = {k: settings.get(k) for k in want}
    check(got == want, f'the recipe\'s values, overridden where given, are the run\'s settings: {got}')
    # A recipe setting that a flag given excludes is left out (--zero-init-residual beside --weights).
    rc_w, out_w = run('train', *common, '--recipe', 'fast', '--amp', 'off', '--epochs', '1', '--max-steps', '1',
                      '--weights', os.path.join(d, 'checkpoint.pth'), '--checkpoint-dir', os.path.join(tmp, 'recipe-w'))
    w_settings = torch.load(os.path.join(tmp, 'recipe-w', 'resnet18', 'resume.pt'))['settings']
    if isinstance(w_settings, str):
        w_settings = json.loads(w_settings)
    check(rc_w == 0 and w_settings.get('zero_init_residual') is False and w_settings.get('mixup') == 0.2,
          'the recipe beside --weights runs without its --zero-init-residual: ' + out_w[-300:])
    # --holdout: training images held out and tested on instead of the test split.
    h_dir = os.path.join(tmp, 'holdout')
    views = ['--tta-flip', '--tta-shift', '3']
    rc_h, out_h = run('train', *common, '--holdout', '200', '--epochs', '1', '--save_model', *views, '--checkpoint-dir', h_dir)
    check(rc_h == 0 and 'each epoch is tested on 200 images held out of' in out_h and
          '800 training and 200 held-out images' in out_h, 'a --holdout 200 run tests on 200 training images: ' + out_h[-500:])
    h_rows = open(os.path.join(h_dir, 'resnet18', 'metrics.csv')).read().splitlines()
    check(len(h_rows) == 2, f'and writes its row: {h_rows}')
    # `resnet test --holdout 200` with the same views tests the same images: the run's figure again.
    rc_t, out_t = run('test', '--model', 'resnet18', '--checkpoint-dir', h_dir, '--data', a.sample, '--device', 'cpu',
                      '--batch-size', str(BATCH), '--holdout', '200', *views)
    top1 = re.search(r'\(200 images; top-1 ([0-9.]+)%\)', out_t)
    check(rc_t == 0 and '18 views an image, on the 200 held-out training images' in out_t and top1 is not None and
          abs(float(top1.group(1)) - 100 * float(h_rows[1].split(',')[3])) < 1e-6,
          f'resnet test --holdout 200 {" ".join(views)} repeats the run\'s held-out top-1 ({h_rows[1]}): ' + out_t[-400:])
    check(json.load(open(os.path.join(h_dir, 'resnet18', 'checkpoint.json'))).get('holdout') == 200,
          'checkpoint.json records --holdout 200')
    rc_t, out_t = run('test', '--model', 'resnet18', '--checkpoint-dir', h_dir, '--data', a.sample, '--device', 'cpu',
                      '--holdout', '100')
    check(rc_t == 1 and 'the model was trained with --holdout 200; --holdout 100 would test other images' in out_t,
          'another --holdout than the run\'s is refused: ' + out_t.strip()[-300:])
    rc_t, out_t = run('test', '--model', 'resnet18', '--checkpoint-dir', ck, '--data', a.sample, '--device', 'cpu',
                      '--holdout', '200')
    check(rc_t == 1 and 'trained on the whole training split (no --holdout)' in out_t,
          '--holdout on a model trained on every training image is refused: ' + out_t.strip()[-300:])
    rc_h, out_h = run('train', *common, '--holdout', '1000', '--epochs', '1', '--checkpoint-dir', h_dir, '--restart')
    check(rc_h == 2 and '--holdout must be between 1 and the training images less one (999' in out_h,
          'a --holdout as large as the split is refused: ' + out_h.strip().splitlines()[-1])
    # --eval-every 2 over 3 epochs: epoch 1 untested (its test columns empty), 2 and the last tested;
    # the best model comes from a tested epoch, and `resnet plot` draws the gaps.
    v_dir = os.path.join(tmp, 'every')
    rc_v, out_v = run('train', *common, '--epochs', '3', '--eval-every', '2', '--save_model', '--checkpoint-dir', v_dir)
    v_rows = [r.split(',') for r in open(os.path.join(v_dir, 'resnet18', 'metrics.csv')).read().splitlines()[1:]]
    v_info = json.load(open(os.path.join(v_dir, 'resnet18', 'checkpoint.json')))
    check(rc_v == 0 and out_v.count('Not tested this epoch (--eval-every)') == 1 and out_v.count('Test Error:') == 2 and
          [r[2:5] == ['', '', ''] for r in v_rows] == [True, False, False] and v_info.get('epoch') in (2, 3),
          f'--eval-every 2 tests epochs 2 and 3 only: {v_rows} {v_info.get("epoch")} ' + out_v[-300:])
    rc_v, out_v = run('plot', '--checkpoint-dir', v_dir, '--model', 'resnet18')
    check(rc_v == 0, 'resnet plot draws a metrics.csv with untested epochs: ' + out_v)
    rc_v, out_v = run('train', *common, '--eval-every', '0', '--checkpoint-dir', v_dir)
    check(rc_v == 2 and '--eval-every' in out_v, 'a --eval-every below 1 is refused by name: ' + out_v.strip()[-200:])
    # --progressive-resize 32,0.5 at --image-size 64 over 2 epochs: epoch 1 trains at 32 px, epoch 2
    # at 64; both tests at 64. A resume with another setting is refused by name.
    p_dir = os.path.join(tmp, 'progressive')
    p_args = [*common[:common.index('--image-size')], '--image-size', '64', *common[common.index('--image-size') + 2:]]
    rc_p, out_p = run('train', *p_args, '--epochs', '2', '--progressive-resize', '32,0.5', '--checkpoint-dir', p_dir)
    check(rc_p == 0 and 'Progressive resizing: training images at 32 px from epoch 1, 64 px from epoch 2; tests at 64 px' in out_p
          and out_p.count('px from this epoch on (--progressive-resize)') == 2 and out_p.count('Test Error:') == 2,
          '--progressive-resize 32,0.5 trains at 32 then 64 px: ' + out_p[-600:])
    rc_p, out_p = run('train', *p_args, '--epochs', '3', '--progressive-resize', '48,0.5', '--checkpoint-dir', p_dir)
    check(rc_p == 2 and 'progressive_resize' in out_p, 'a resume with another --progressive-resize is refused: ' + out_p[-300:])
    rc_p, out_p = run('train', *p_args, '--progressive-resize', '64,0.5', '--checkpoint-dir', p_dir, '--restart')
    check(rc_p == 2 and '--progressive-resize must be START,FRACTION' in out_p and 'below --image-size 64' in out_p,
          'a START not below --image-size is refused by name: ' + out_p[-300:])
    # --test-crop-pct goes into checkpoint.json; `test` transforms the images as the run tested them.
    c_dir = os.path.join(tmp, 'crop')
    rc_c, out_c = run('train', *common, '--epochs', '1', '--test-crop-pct', '1', '--save_model', '--checkpoint-dir', c_dir)
    c_info = json.load(open(os.path.join(c_dir, 'resnet18', 'checkpoint.json')))
    rc_t, out_t = run('test', '--model', 'resnet18', '--checkpoint-dir', c_dir, '--data', a.sample, '--device', 'cpu',
                      '--batch-size', str(BATCH))  # the loss is a mean of the batches' (the sample's)
    said = re.findall(r'Accuracy: (\d+\.\d)%, Avg loss: (\d\.\d{6})', out_c)
    tested = re.findall(r'Accuracy: (\d+\.\d)%, Avg loss: (\d\.\d{6})', out_t)
    check(rc_c == 0 and rc_t == 0 and c_info.get('test_crop_pct') == 1 and said and tested and said[-1] == tested[0],
          f'checkpoint.json has test_crop_pct 1 and test repeats train\'s figures: {c_info.get("test_crop_pct")} '
          f'{said[-1:]} {tested[:1]}')
    # Fine-tuning with an average: it starts from the weights read (--weights), not the random ones.
    f_dir = os.path.join(tmp, 'f')
    best = os.path.join(d, 'checkpoint.pth')
    rc_f, out_f = run('train', *common, '--weights', best, '--ema-decay', '0.99', '--max-steps', '1',
                      '--checkpoint-dir', f_dir)
    rf = torch.load(os.path.join(f_dir, 'resnet18', 'resume.pt'))
    start = torch.load(best)
    gap = max(((rf['ema.' + k] - v).norm() / v.norm()).item() for k, v in start.items() if v.is_floating_point() and v.norm() > 0)
    check(rc_f == 0 and gap < 1e-2, f'the average starts from --weights (largest relative gap after one step: {gap:.2e})')
    rc_e, out_e = run('train', *common, '--lr', '0.05', '--lr-schedule', 'step', '--epochs', '3', '--checkpoint-dir', d_dir)
    check(rc_e == 2 and 'lr_schedule' in out_e and '--restart' in out_e,
          'another schedule does not resume the run: ' + out_e.strip().splitlines()[-1])
finally:
    shutil.rmtree(tmp)
finish()
