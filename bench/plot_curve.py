#!/usr/bin/env python3
"""Test top-1 against wall time from train's metrics.csv files (its elapsed_s column), one line
per file, as a PNG: the curve issue 12 asks for beside docs/RECIPES.md's table.

    python3 bench/plot_curve.py --out docs/img/curve.png LABEL=metrics.csv [LABEL=metrics.csv ...]

Needs matplotlib (pip install matplotlib); not part of the build or the tests."""
import argparse, csv

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt


def read(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows or 'elapsed_s' not in rows[0]:
        raise SystemExit(f'{path}: no elapsed_s column (metrics.csv from a train of 2026-11-30 or later)')
    tested = [r for r in rows if r.get('top1')]  # (--eval-every N: the other epochs have no test)
    if not tested:
        raise SystemExit(f'{path}: no tested epoch (an empty top1 column)')
    return [float(r['elapsed_s']) / 60 for r in tested], [100 * float(r['top1']) for r in tested]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('runs', nargs='+', help='LABEL=metrics.csv')
    p.add_argument('--out', required=True)
    p.add_argument('--title', default='ResNet-50 on CIFAR-10, 224 px, from scratch')
    p.add_argument('--target', type=float, default=94.0, help='a dashed line at this top-1 (0: none)')
    a = p.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for run in a.runs:
        label, _, path = run.partition('=')
        minutes, top1 = read(path)
        ax.plot(minutes, top1, marker='.', label=f'{label} (final {top1[-1]:.2f}%, {minutes[-1]:.1f} min)')
    if a.target > 0:
        ax.axhline(a.target, color='grey', linestyle='--', linewidth=1)
        ax.axvline(15, color='grey', linestyle=':', linewidth=1)
    ax.set_xlabel('wall time since the start (minutes; start-up, data and tests included)')
    ax.set_ylabel('test top-1 (%)')
    ax.set_title(a.title)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out)
    print(a.out)


if __name__ == '__main__':
    main()
