"""Reference tensors for the model parity tests (tests/test_model_parity.cpp), written by
PyTorch + torchvision, as llm.c's test_gpt2 reference is written by its Python twin.

For each architecture: <out>/<model>.weights.pt holds random weights (torchvision's default
initialisation, then batch-norm affine parameters and running statistics drawn at random so that
they matter) and the input batch; <out>/<model>.<device>.pt holds, computed on that device:
  logits_eval   model.eval()(input)
  logits_train  model.train()(input), after torch.manual_seed(TRAIN_SEED) (dropout masks)
  loss          cross_entropy(logits_train, labels)
  grad.<name>   gradients of several named parameters after loss.backward()
  buffer.<name> a few batch-norm running statistics after the train-mode forward
<out>/param_counts.json: parameter counts for 10 and 1000 classes.
<out>/trajectory.<device>.pt: a short training run from resnet18's weights (llm.c's trajectory
check): TRAJECTORY's steps of torch.optim.SGD on random batches in train mode, fp32: input
[steps, B, 3, S, S], labels [steps, B], hyper (lr, momentum, weight decay), losses [steps],
delta.<name> (a parameter's change over the run) and buffer.<name> after the last step.
TRAJECTORY's rate is small on purpose: at 1e-2 the run is chaotic (weights changed by 1e-7, about
float32's rounding, moved the final parameters by 26%), so no tolerance could tell a bug from
rounding. At 1e-4 with batches of 32 that change moves the losses by under 1e-6 and the
parameters' changes by under 5e-4, while a wrong optimizer (no weight decay, 10x weight decay,
no momentum, Nesterov) moves the changes by 6e-2 or more (measured with this script's model).
CUDA outputs are written when a GPU is visible; TF32 is off so that they are float32 results.
Files are rewritten only when this script changes (a stamp holds its hash).
"""
import argparse, hashlib, json, os, sys
import torch, torchvision

MODELS = ['resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'resnext50_32x4d',
          'wide_resnet50_2', 'squeezenet1_0', 'squeezenet1_1']
NUM_CLASSES = 10
BATCH, SIZE = 4, 64   # small, but every stage still sees more than one pixel
TRAIN_SEED = 1234     # seeds dropout in the train-mode forward; the C++ test uses the same
GRADS = {'resnet': ['conv1.weight', 'bn1.weight', 'bn1.bias', 'layer1.0.conv1.weight',
                    'layer2.0.downsample.0.weight', 'layer4.0.bn2.weight', 'fc.weight', 'fc.bias'],
         'squeezenet': ['features.0.weight', 'features.0.bias', 'features.3.squeeze.weight',
                        'features.12.expand3x3.weight', 'classifier.1.weight', 'classifier.1.bias']}
BUFFERS = {'resnet': ['bn1.running_mean', 'bn1.running_var', 'layer4.0.bn2.running_var',
                      'bn1.num_batches_tracked'],
           'squeezenet': []}


TRAJECTORY = dict(steps=8, batch=32, size=32, lr=1e-4, momentum=0.9, weight_decay=1e-4, seed=99)


def family(name):
    return 'squeezenet' if name.startswith('squeezenet') else 'resnet'


def make_weights(name, seed):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(num_classes=NUM_CLASSES)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    y = torch.randint(0, NUM_CLASSES, (BATCH,))
    return model, x, y


def outputs(model, x, y, name, device):
    model = model.to(device)
    x, y = x.to(device), y.to(device)
    out = {}
    model.eval()
    with torch.no_grad():
        out['logits_eval'] = model(x)
    model.train()
    torch.manual_seed(TRAIN_SEED)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    out['logits_train'] = logits.detach()
    out['loss'] = loss.detach()
    params = dict(model.named_parameters())
    for g in GRADS[family(name)]:
        out['grad.' + g] = params[g].grad
    buffers = dict(model.named_buffers())
    for b in BUFFERS[family(name)]:
        out['buffer.' + b] = buffers[b]
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def trajectory(model, device):
    t = TRAJECTORY
    model = model.to(device).train()
    torch.manual_seed(t['seed'])
    xs = torch.randn(t['steps'], t['batch'], 3, t['size'], t['size'])
    ys = torch.randint(0, NUM_CLASSES, (t['steps'], t['batch']))
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=t['lr'], momentum=t['momentum'], weight_decay=t['weight_decay'])
    losses = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out = {'input': xs, 'labels': ys, 'losses': torch.tensor(losses, dtype=torch.float64),
           'hyper': torch.tensor([t['lr'], t['momentum'], t['weight_decay']], dtype=torch.float64)}
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    out.update({'delta.' + g: (params[g].detach() - start[g]).cpu().contiguous() for g in GRADS['resnet']})
    out.update({'buffer.' + b: buffers[b].detach().cpu().contiguous() for b in BUFFERS['resnet']})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--models', nargs='*', default=MODELS)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    stamp_path = os.path.join(a.out, 'stamp')
    stamp = hashlib.sha256(open(__file__, 'rb').read()).hexdigest() + ' ' + ' '.join(devices + a.models)
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        print('reference tensors are up to date in', a.out)
        return
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    counts = {}
    for i, name in enumerate(a.models):
        ctor = getattr(torchvision.models, name)
        counts[name] = {str(k): sum(p.numel() for p in ctor(num_classes=k).parameters())
                        for k in (NUM_CLASSES, 1000)}
        model, x, y = make_weights(name, seed=i)
        blob = {'state.' + k: v.clone() for k, v in model.state_dict().items()}
        blob.update({'input': x, 'labels': y})
        torch.save(blob, os.path.join(a.out, f'{name}.weights.pt'))
        for device in devices:
            m, _, _ = make_weights(name, seed=i)  # fresh copy: the train step changes buffers
            torch.save(outputs(m, x, y, name, device), os.path.join(a.out, f'{name}.{device}.pt'))
            if name == 'resnet18':  # (from the weights of resnet18.weights.pt)
                m, _, _ = make_weights(name, seed=i)
                torch.save(trajectory(m, device), os.path.join(a.out, f'trajectory.{device}.pt'))
        print(f'{name}: {counts[name][str(NUM_CLASSES)]:,} parameters; wrote {", ".join(devices)}', flush=True)
    json.dump(counts, open(os.path.join(a.out, 'param_counts.json'), 'w'), indent=1)
    open(stamp_path, 'w').write(stamp)


if __name__ == '__main__':
    sys.exit(main())
