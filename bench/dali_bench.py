"""DALI's ImageNet training input beside our loader (issue 15): the same folder, batch and size as
`data_bench loader` (RandomResizedCrop at scale 0.08-1 and ratio 3/4-4/3, resize to SIZE, random
mirror, normalise to float CHW), read with fn.readers.file and decoded with
fn.decoders.image_random_crop: on the GPU (`--decoder mixed`: nvJPEG, the hardware engines for a
share of the images, DALI's default) or on the CPU (`--decoder cpu`, which also runs without a GPU).
Prints one JSON line, as data_bench does.

    PYTHONPATH=/tmp/site-dali python3 bench/dali_bench.py --folder /tmp/inet/train --decoder mixed

DALI comes from PyPI (nvidia-dali-cuda130 and what it needs); on the GPU machine it travels in
parts (bench/dali_parts.sh).
"""
import argparse, json, os, time

from nvidia.dali import fn, pipeline_def, types

MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


@pipeline_def
def training_input(folder, size, decoder):
    files, labels = fn.readers.file(file_root=folder, random_shuffle=True, name='reader')
    images = fn.decoders.image_random_crop(files, device=decoder, output_type=types.RGB,
                                           random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3],
                                           num_attempts=10)
    images = fn.resize(images, resize_x=size, resize_y=size)
    return fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout='CHW', mean=MEAN, std=STD,
                                    mirror=fn.random.coin_flip(probability=0.5)), labels


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--folder', required=True, help='an image folder of class subfolders (the training split)')
    p.add_argument('--decoder', choices=['mixed', 'cpu'], default='mixed')
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--image-size', type=int, default=224)
    p.add_argument('--batches', type=int, default=60, help='batches timed, after 3 of warm-up')
    p.add_argument('--threads', type=int, default=os.cpu_count())
    a = p.parse_args()
    pipe = training_input(folder=a.folder, size=a.image_size, decoder=a.decoder, batch_size=a.batch_size,
                          num_threads=a.threads, device_id=0 if a.decoder == 'mixed' else None, seed=0,
                          prefetch_queue_depth=2)
    pipe.build()
    out = {'bench': 'dali', 'folder': a.folder, 'decoder': a.decoder, 'batch_size': a.batch_size,
           'image_size': a.image_size, 'threads': a.threads}
    try:
        for _ in range(3):
            pipe.run()
        start = time.perf_counter()
        images = 0
        for _ in range(a.batches):
            batch, _ = pipe.run()
            images += len(batch)
        seconds = time.perf_counter() - start
        shape = list(batch.as_tensor().shape()) if a.decoder == 'cpu' else list(batch.as_cpu().as_tensor().shape())
        out.update(batches=a.batches, img_per_s=images / seconds, ms_per_batch=1000 * seconds / a.batches,
                   batch_shape=shape)
    except Exception as e:  # a file DALI cannot decode stops its pipeline: say which
        out['error'] = str(e).strip().splitlines()[0][:400]
    print(json.dumps(out), flush=True)


if __name__ == '__main__':
    main()
