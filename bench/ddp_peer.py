"""The Python peer of `resnet bench --nproc-per-node N`: torchvision's ResNet-50 (10 classes) under
PyTorch's DistributedDataParallel, autocast bf16 + channels-last (peer_bench.py's gpu-bf16-cl mode
on every GPU), synthetic data already on each GPU, SGD lr 0.001 momentum 0.9 wd 1e-4, batch --bs
per GPU. Launch with torchrun on the GPU machine:
  python3 -m torch.distributed.run --standalone --nproc-per-node 4 bench/ddp_peer.py --bs 256
Rank 0 prints one JSON line: {"mode": "ddp-bf16-cl", "gpus", "bs", "img_per_s" (all GPUs),
"img_per_s_per_gpu", "peak_mem_gib"}."""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torchvision
from torch import nn

p = argparse.ArgumentParser()
p.add_argument('--bs', type=int, default=256)
p.add_argument('--steps', type=int, default=30)
p.add_argument('--warmup', type=int, default=8)
a = p.parse_args()

local_rank = int(os.environ.get('LOCAL_RANK', 0))
torch.cuda.set_device(local_rank)
dist.init_process_group('nccl')
world = dist.get_world_size()
torch.backends.cudnn.benchmark = True
torch.manual_seed(0)
model = torchvision.models.resnet50(num_classes=10).cuda().to(memory_format=torch.channels_last)
model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank])
opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)
lossf = nn.CrossEntropyLoss()
X = torch.randn(a.bs, 3, 224, 224, device='cuda').to(memory_format=torch.channels_last)
y = torch.randint(0, 10, (a.bs,), device='cuda')


def step():
    with torch.autocast('cuda', dtype=torch.bfloat16):
        loss = lossf(model(X), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


for _ in range(a.warmup):
    step()
torch.cuda.synchronize()
dist.barrier()
t0 = time.perf_counter()
for _ in range(a.steps):
    step()
torch.cuda.synchronize()
dist.barrier()
dt = time.perf_counter() - t0
if dist.get_rank() == 0:
    total = a.bs * a.steps * world / dt
    print(json.dumps({'mode': 'ddp-bf16-cl', 'gpus': world, 'bs': a.bs, 'img_per_s': round(total, 1),
                      'img_per_s_per_gpu': round(total / world, 1),
                      'peak_mem_gib': round(torch.cuda.max_memory_allocated() / 2**30, 2)}), flush=True)
dist.destroy_process_group()
