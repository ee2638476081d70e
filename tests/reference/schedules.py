"""Prints the learning rates PyTorch's schedulers give, stepped once per iteration, that
tests/test_schedule.cpp compares ours with (OneCycleLR; LinearLR warm-up then CosineAnnealingLR)."""
import torch

p = [torch.nn.Parameter(torch.zeros(1))]


def rates(make, steps=100):
    opt = torch.optim.SGD(p, lr=0.1)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    return out


one = rates(lambda o: torch.optim.lr_scheduler.OneCycleLR(
    o, max_lr=0.1, total_steps=100, pct_start=0.3, anneal_strategy='cos', cycle_momentum=False,
    div_factor=25, final_div_factor=1e4))
print('onecycle', [(i, one[i]) for i in (0, 1, 15, 28, 29, 30, 31, 60, 98, 99)])
wc = rates(lambda o: torch.optim.lr_scheduler.SequentialLR(o, [
    torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=20),
    torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=80, eta_min=0.001)], milestones=[20]))
print('warmup+cosine', [(i, wc[i]) for i in (0, 10, 19, 20, 21, 60, 99)])
