"""Images/s of the training data pipelines decoding 112x112 face crops on this machine.

    .venv/bin/python bench/data_throughput.py [--data ../shared/data/celeba] [--images 1000]

Without aligned crops at hand, it makes them: the first ``--images`` images of ``--data``
(square 250px CelebA crops) resized to 112x112 JPEG q95 in a temporary folder (the size and
format ``tfface-align`` writes), then times, over ``--epochs`` epochs each:

- ``numpy``: ``FacePipeline.numpy_batches`` (thread pool; the Keras-on-JAX path), and with
  ``processes=`` worker processes;
- ``tf.data``: ``FacePipeline.tf_dataset`` (same decode through ``tf.numpy_function``);
- each with augmentation on, from TFRecord shards, and from the raw 250px files (decode +
  resize on the fly);
- ``tf native decode``: a plain ``tf.io.decode_jpeg`` map, as a yardstick for the above.

Numbers depend on the cores free; run it on an idle machine for figures you quote.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def make_crops(src, dst, limit):
    import cv2

    from tfface.core.image import load_image, save_image_atomic
    from training.data.folders import list_image_folder

    listing = list_image_folder(src)
    for path in listing.paths[:limit]:
        rgb = cv2.resize(load_image(path), (112, 112), interpolation=cv2.INTER_AREA)
        rel = os.path.relpath(path, listing.root)
        save_image_atomic(os.path.join(dst, rel), rgb, quality=95)


def timed(batches, warmup=2):
    """Images per second over all batches after ``warmup`` batches."""
    n, start = 0, None
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        elif i > warmup:
            n += len(batch[0])
    if start is None or n == 0:
        return float("nan")
    return n / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "celeba"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    from training.data.augment import AugmentConfig
    from training.data.pipeline import FacePipeline
    from training.data.tfrecord import convert

    with tempfile.TemporaryDirectory(prefix="tfface-bench-") as tmp:
        crops = os.path.join(tmp, "crops")
        t0 = time.perf_counter()
        make_crops(args.data, crops, args.images)
        print(f"made {args.images} 112x112 crops in {time.perf_counter() - t0:.1f} s; "
              f"{args.workers} workers, batch {args.batch}, cpu_count {os.cpu_count()}")
        convert(crops, os.path.join(tmp, "shards"), shards=4, progress=False)
        kw = {"batch_size": args.batch, "workers": args.workers}
        cases = {
            "numpy, 112px JPEG": (FacePipeline(crops, **kw), "numpy"),
            f"numpy {args.workers} procs, 112px JPEG": (FacePipeline(crops, **kw), "procs"),
            "tf.data, 112px JPEG": (FacePipeline(crops, **kw), "tf"),
            "numpy, 112px + augment": (FacePipeline(crops, augment=AugmentConfig(), **kw),
                                       "numpy"),
            "tf.data, 112px + augment": (FacePipeline(crops, augment=AugmentConfig(), **kw),
                                         "tf"),
            "numpy, TFRecord shards": (FacePipeline(os.path.join(tmp, "shards"), **kw), "numpy"),
            "numpy, 250px files resized": (FacePipeline(args.data, **kw), "numpy"),
        }
        for name, (pipe, backend) in cases.items():
            limit = max(3, args.epochs * args.images // args.batch)
            if backend == "numpy":
                it = pipe.numpy_batches()
            elif backend == "procs":
                it = pipe.numpy_batches(processes=args.workers)
            else:
                it = pipe.tf_dataset().as_numpy_iterator()
            rate = timed(b for _, b in zip(range(limit), it))
            print(f"{name:32s} {rate:8.0f} img/s  (skipped {pipe.skipped.count})")

        import tensorflow as tf

        files = sorted(tf.io.gfile.glob(os.path.join(crops, "*", "*.jpg")))
        ds = (tf.data.Dataset.from_tensor_slices(files).repeat()
              .map(lambda f: tf.cast(tf.io.decode_jpeg(tf.io.read_file(f), channels=3),
                                     tf.float32) / 128.0 - 127.5 / 128.0,
                   num_parallel_calls=args.workers)
              .batch(args.batch).prefetch(tf.data.AUTOTUNE))
        limit = max(3, args.epochs * args.images // args.batch)
        rate = timed(b for _, b in zip(range(limit), ((np.asarray(x),) for x in ds)))
        print(f"{'tf native decode (yardstick)':32s} {rate:8.0f} img/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
