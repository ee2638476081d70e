#!/usr/bin/env python3
"""What the training loop's waits for data were made of, from RESNET_LOADER_TRACE's CSV (issue 15).

    python3 bench/loader_trace.py loader-trace-gpu.csv [more.csv ...]

For each file and each epoch of the training loader (the test loader's rows left out): the batches,
the seconds next() waited in all, and the batches it waited more than LATE_MS for ("late") beside
the rest ("on time"), each group's mean, in ms: how long before next() took it the batch was asked
for (the look-ahead), how long it sat queued before a gathering thread started it, how long its
gathering took, and the gathering's parts as the source counted them (reading, headers, nvJPEG's
decode, the CPU's decode, each summed over the threads that did them). A late batch whose gathering
took longer than the others' points at the decoding; one that started late, at too few gathers at
once. Standard library only."""
import argparse, csv, statistics

LATE_MS = 2.0  # a wait longer than this counts the batch late (a step takes 30 ms at batch 256)


def mean_ms(rows, f):
    return 1000 * statistics.fmean(f(r) for r in rows) if rows else float('nan')


def summary(rows):
    return {
        'asked ahead': mean_ms(rows, lambda r: r['taken_s'] - r['asked_s']),
        'queued': mean_ms(rows, lambda r: r['started_s'] - r['asked_s']),
        'gathering': mean_ms(rows, lambda r: r['gathered_s'] - r['started_s']),
        'reading': mean_ms(rows, lambda r: r['read_s']),
        'headers': mean_ms(rows, lambda r: r['headers_s']),
        'nvJPEG': mean_ms(rows, lambda r: r['gpu_s']),
        'CPU decode': mean_ms(rows, lambda r: r['cpu_s']),
        'waited': mean_ms(rows, lambda r: r['waited_s']),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('traces', nargs='+')
    a = p.parse_args()
    for path in a.traces:
        with open(path) as f:
            rows = [r for r in csv.DictReader(f) if r['loader'] == 'train']
        for r in rows:
            for k, v in r.items():
                if k != 'loader':
                    r[k] = float(v)
        print(f'## {path}')
        if not rows:
            print('(no training batches)')
            continue
        keys = list(summary(rows))
        print('| epoch | batches | waited, s | late (over %g ms) | group | ' % LATE_MS + ' | '.join(keys) + ' |')
        print('|' + '---|' * (5 + len(keys)))
        for epoch in sorted({int(r['epoch']) for r in rows}):
            mine = [r for r in rows if int(r['epoch']) == epoch]
            late = [r for r in mine if 1000 * r['waited_s'] > LATE_MS]
            on_time = [r for r in mine if 1000 * r['waited_s'] <= LATE_MS]
            waited = sum(r['waited_s'] for r in mine)
            for group, members in (('late', late), ('on time', on_time)):
                s = summary(members)
                print(f'| {epoch + 1} | {len(mine)} | {waited:.2f} | {len(late)} | {group} ({len(members)}) | ' +
                      ' | '.join(f'{s[k]:.1f}' for k in keys) + ' |')


if __name__ == '__main__':
    main()
