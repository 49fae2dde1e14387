"""Convert a face data set to TFRecord shards, and read them back with tf.data.

    python -m training.data.tfrecord SRC_DIR OUT_PREFIX --shards 8

writes ``OUT_PREFIX-00000-of-00008.tfrecord`` ... (``tf.train.Example`` with ``image``: JPEG
bytes of the aligned crop, ``label``: int64), ``OUT_PREFIX.json`` (class names, image size,
counts, skipped files) and ``OUT_PREFIX.index.npz`` (record offsets and labels, so loaders
open the shards without a scan). Images are spread over shards in a seeded random order, so
streaming a few shards still mixes identities. Crops already of the target size and in JPEG
are stored byte for byte; others are decoded, resized (see ``decode_face``) and re-encoded.
Unreadable images are skipped, counted and listed in the JSON; the run still succeeds.

SRC may be anything :func:`training.data.sources.open_source` reads (identity folders, an
insightface ``train.rec`` folder, other shards). The shards are read back by
:func:`tfrecord_dataset` (tf.data) or, without TensorFlow, by
:class:`training.data.tfrecord_index.TFRecordSource` (what the pipelines use).
"""

import argparse
import json
import os
import sys

import numpy as np
from tqdm import tqdm

from tfface.core.image import encode_image, load_image
from tfface.errors import DataError, ImageError
from training.data.sources import SkipCounter, check_crops, decode_face, open_source
from training.data.tfrecord_index import SHARD_GLOB, index_path, shard_paths

JPEG_SOI = b"\xff\xd8\xff"


def shard_name(prefix, k, n):
    return f"{prefix}-{k:05d}-of-{n:05d}.tfrecord"


def _example(tf, image_bytes, label):
    return tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    })).SerializeToString()


def _crop_bytes(source, i, size, quality):
    data = source.read(i)
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as fh:
            data = fh.read()
    rgb = load_image(data)
    if rgb.shape[:2] == (size, size) and data[:3] == JPEG_SOI:
        return data  # already an aligned JPEG crop: store it unchanged
    return encode_image(decode_face(rgb, size), "jpg", quality=quality)


def convert(src, out_prefix, shards=1, size=112, quality=95, seed=0, min_images=1,
            progress=True):
    """Write ``src`` as TFRecord shards.

    Returns:
        the sidecar dict (also written to ``OUT_PREFIX.json``).
    Raises:
        DataError: bad arguments, unreadable source, or nothing could be written.
    """
    import tensorflow as tf

    if shards < 1:
        raise DataError(f"--shards must be >= 1; received {shards}")
    source = open_source(src, min_images=min_images)
    check_crops(source, size)  # raw photos: refuse, pointing at tfface-align
    out_prefix = os.fspath(out_prefix)
    os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
    for old in shard_paths(out_prefix):
        os.remove(old)  # a rerun with fewer shards must not leave stale ones behind
    order = np.random.default_rng(seed).permutation(len(source))
    skipped = SkipCounter(keep=1000)
    names = [shard_name(out_prefix, k, shards) for k in range(shards)]
    writers = [tf.io.TFRecordWriter(n) for n in names]
    positions = [0] * shards
    index = {"shard": [], "offset": [], "length": [], "label": []}
    written = 0
    try:
        for i in tqdm(order, desc="tfrecord", unit="img", disable=not progress, file=sys.stderr):
            try:
                data = _crop_bytes(source, int(i), size, quality)
            except (ImageError, DataError, OSError) as err:
                skipped.add(source.name(int(i)), str(err))
                continue
            k = written % shards
            record = _example(tf, data, source.labels[i])
            writers[k].write(record)
            index["shard"].append(k)
            index["offset"].append(positions[k] + 12)
            index["length"].append(len(record))
            index["label"].append(int(source.labels[i]))
            positions[k] += 16 + len(record)
            written += 1
    finally:
        for w in writers:
            w.close()
    if written == 0:
        raise DataError(f"{src}: no readable image ({skipped.count} skipped)")
    index = {k: np.asarray(v, dtype=np.int64) for k, v in index.items()}
    order = np.lexsort((index["offset"], index["shard"]))  # shard order, as a scan finds them
    np.savez(index_path(out_prefix), **{k: v[order] for k, v in index.items()})
    meta = {"format": "tfface-tfrecord", "version": 1, "image_size": size,
            "num_images": written, "num_classes": int(source.num_classes),
            "class_names": list(source.class_names), "source": os.fspath(src),
            "shards": [os.path.basename(n) for n in names], "skipped": skipped.count,
            "skipped_files": skipped.examples}
    with open(out_prefix + ".json", "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)
    return meta


def tfrecord_dataset(spec, parallel_reads=4):
    """Stream shards with tf.data: ``(image bytes string, label int64)`` elements.

    For custom tf.data graphs; decode with the project decoder (``decode_face``) or, for
    converter-written 112px JPEGs, ``tf.io.decode_jpeg``.
    """
    import tensorflow as tf

    files = shard_paths(spec)
    if not files:
        raise DataError(f"{spec}: no TFRecord shards ({SHARD_GLOB.format(prefix=spec)})")
    features = {"image": tf.io.FixedLenFeature([], tf.string),
             "label": tf.io.FixedLenFeature([], tf.int64)}
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(parallel_reads, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)

    def parse(record):
        ex = tf.io.parse_single_example(record, features)
        return ex["image"], ex["label"]

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m training.data.tfrecord",
        description="Convert aligned face crops (identity folders or an insightface train.rec "
                    "folder) to TFRecord shards. Raw photos: run `tfface-align SRC DST` first.")
    parser.add_argument("src", help="folder of identity folders, or a train.rec folder")
    parser.add_argument("out_prefix", help="output prefix, e.g. data/celeba-train")
    parser.add_argument("--shards", type=int, default=8, help="number of shards (default 8)")
    parser.add_argument("--size", type=int, default=112, help="crop side in pixels (112)")
    parser.add_argument("--quality", type=int, default=95,
                        help="JPEG quality for re-encoded crops (95)")
    parser.add_argument("--min-images", type=int, default=1,
                        help="drop identities with fewer images (1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shard order (0)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    try:
        meta = convert(args.src, args.out_prefix, args.shards, args.size, args.quality,
                       args.seed, args.min_images)
    except DataError as err:
        if args.debug:
            raise
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {meta['num_images']} images of {meta['num_classes']} identities to "
          f"{args.shards} shards ({args.out_prefix}-*); skipped {meta['skipped']} unreadable")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
