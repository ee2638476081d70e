#!/usr/bin/env python3
"""What the training loop's waits for data were made of, from RESNET_LOADER_TRACE's CSV (issue 15).

    python3 bench/loader_trace.py loader-trace-gpu.csv [more.csv ...]

For each file and each epoch of the training loader (the test loader's rows left out): the batches,
the seconds next() waited in all, and the batches it waited more than LATE_MS for ("late") beside
the rest ("on time"), each group's median, in ms: how long before next() took it the batch was
asked for (the look-ahead; a batch gathered ahead during the epoch before counts its seconds there,
which the median leaves aside), how long it sat queued before a gathering thread started it, how
long its gathering took, and the gathering's parts as the source counted them (reading, headers,
nvJPEG's decode, the CPU's decode, each summed over the threads that did them; where the trace has
them, the rest of a GPU gather: the batch zeroed before nvJPEG, the wait for the CPU's part after
nvJPEG's call, the CPU's rows and labels uploaded; and "other", the gathering less all its parts but the CPU's
decode, which runs beside nvJPEG's; these over the batches nvJPEG decoded in). A late batch whose
gathering took longer than the others' points at the decoding; one that started late, at too few
gathers at once. Each epoch also says what share of its images nvJPEG decoded and how often a
decoder set nvJPEG up again (the gpu_setups column; '-' for a trace written before it). Rows cut short (a run stopped while writing) are left out. Standard library only."""
import argparse, csv, statistics

LATE_MS = 2.0  # a wait longer than this counts the batch late (a step takes 30 ms at batch 256)
PARTS = {
    'asked ahead': lambda r: r['taken_s'] - r['asked_s'],
    'queued': lambda r: r['started_s'] - r['asked_s'],
    'gathering': lambda r: r['gathered_s'] - r['started_s'],
    'reading': lambda r: r['read_s'],
    'headers': lambda r: r['headers_s'],
    'nvJPEG': lambda r: r['gpu_s'],
    'CPU decode': lambda r: r['cpu_s'],
    'waited': lambda r: r['waited_s'],
}
# A GPU gather's other parts (traces written since 2026-12-02's sixth session), shown where present
GPU_PARTS = {
    'zeros': lambda r: r['zeros_s'],
    'CPU wait': lambda r: r['cpu_wait_s'],
    'upload': lambda r: r['upload_s'],
    'other': lambda r: (r['gathered_s'] - r['started_s'] - r['read_s'] - r['headers_s'] - r['zeros_s'] - r['gpu_s']
                        - r['cpu_wait_s'] - r['upload_s']),
}


def read(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            if r.get('loader') != 'train' or None in r.values() or '' in r.values():
                continue
            rows.append({k: (v if k == 'loader' else float(v)) for k, v in r.items()})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('traces', nargs='+')
    a = p.parse_args()
    for path in a.traces:
        rows = read(path)
        print(f'## {path}')
        if not rows:
            print('(no training batches)')
            continue
        parts = dict(PARTS)
        # (a GPU gather's parts over the batches nvJPEG decoded in: a CPU gather has none)
        gpu_parts = all('upload_s' in r for r in rows) and any(r['gpu_images'] > 0 for r in rows)
        if gpu_parts:
            parts.update(GPU_PARTS)
        print(f'| epoch | batches | waited, s | late (over {LATE_MS:g} ms) | GPU share of the images | nvJPEG set-ups | group | '
              + ' | '.join(parts) + ' |')
        print('|' + '---|' * (7 + len(parts)))
        for epoch in sorted({int(r['epoch']) for r in rows}):
            mine = [r for r in rows if int(r['epoch']) == epoch]
            late = [r for r in mine if 1000 * r['waited_s'] > LATE_MS]
            waited = sum(r['waited_s'] for r in mine)
            gpu = sum(r['gpu_images'] for r in mine)
            decoded = gpu + sum(r['cpu_images'] for r in mine)
            share = f'{100 * gpu / decoded:.0f}%' if decoded else '-'
            setups = f"{sum(r['gpu_setups'] for r in mine):.0f}" if all('gpu_setups' in r for r in mine) else '-'
            for group, members in (('late', late), ('on time', [r for r in mine if r not in late])):
                if not members:
                    continue
                on_gpu = [r for r in members if r['gpu_images'] > 0]

                def cell(name, f):
                    of = on_gpu if name in GPU_PARTS else members
                    return f'{1000 * statistics.median(f(r) for r in of):.1f}' if of else '-'
                cells = ' | '.join(cell(name, f) for name, f in parts.items())
                print(f'| {epoch + 1} | {len(mine)} | {waited:.2f} | {len(late)} | {share} | {setups} | {group} ({len(members)}) | {cells} |')
        print()


if __name__ == '__main__':
    main()
