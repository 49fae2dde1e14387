"""Training batches from any source, as tf.data (TensorFlow backend) or numpy (Keras on JAX).

Both backends run the same three steps, so for the same source, seed and epoch they yield
the same batches, pixel for pixel:

1. **Plan** (Python, cheap): per epoch, a seeded shuffle cut into batches of image indices,
   or the P x K sampler's batches. A pure function of ``(seed, epoch)``: a resumed run
   (``start_epoch``, ``start_batch``) continues exactly where the killed one was.
2. **Assemble** one batch: read + decode every image (``tfface.core.image.load_image``; see
   :func:`training.data.sources.decode_face` for the size policy), optionally from the
   decoded-image cache, augment with per-image seeds ``(seed, epoch, position)``, and
   normalise with ``tfface.core.preprocess.normalize_face`` (the one preprocessing).
3. **Run ahead**: numpy: a thread pool assembles the next batches in the background
   (decoders and OpenCV release the GIL); tf.data: ``from_generator(plan)`` ->
   ``map(numpy_function(assemble), num_parallel_calls)`` -> ``prefetch``.

Unreadable images (missing, empty, truncated, not an image, corrupt record) are skipped and
counted in :attr:`FacePipeline.skipped`, never fatal. The slot of a skipped image is refilled
with a copy of another image of the same identity in the batch (else any readable image of
the batch), so batches keep a fixed shape (one JAX compilation) and P x K composition; a
batch with no readable image is dropped.

Batches: ``(images float32 (B, S, S, 3), labels int32 (B,))``, plus ``targets float32 (B, D)``
when teacher targets are given (the ``emb_flip`` row for a mirrored image).
"""

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tfface.core.preprocess import normalize_face
from tfface.errors import DataError
from training.data.augment import AugmentConfig, augment_face, image_rng
from training.data.sources import SkipCounter, check_crops, load_face, open_source
from training.data.teacher import select_targets


class DecodedCache:
    """Decoded uint8 crops kept after their first read: in memory, or in a file (memmap).

    Args:
        n: number of images.
        size: crop side.
        path: None for memory; a file path for a disk cache (reused across runs when its
            size matches; delete it when the source changes).
    """

    def __init__(self, n, size, path=None):
        shape = (n, size, size, 3)
        if path is None:
            self.images = np.zeros(shape, dtype=np.uint8)
            self.filled = np.zeros(n, dtype=bool)
        else:
            path = os.fspath(path)
            mode = "r+" if os.path.isfile(path) and os.path.getsize(path) == int(
                np.prod(shape)) + n else "w+"
            raw = np.memmap(path, dtype=np.uint8, mode=mode, shape=(int(np.prod(shape)) + n,))
            self.images = raw[: int(np.prod(shape))].reshape(shape)
            self.filled = raw[int(np.prod(shape)):].view(bool)

    def get(self, i):
        return self.images[i] if self.filled[i] else None

    def put(self, i, rgb):
        self.images[i] = rgb
        self.filled[i] = True


class FacePipeline:
    """Batches of aligned faces for training.

    Args:
        source: a path (see :func:`training.data.sources.open_source`) or an opened source.
        batch_size: images per batch (ignored when ``sampler`` is given: P*K).
        image_size: crop side S in pixels.
        shuffle: reshuffle every epoch (plain batches).
        seed: seeds shuffling and augmentation.
        augment: :class:`AugmentConfig`; None turns augmentation off.
        sampler: a :class:`training.data.sampler.PKSampler` over ``source.labels``.
        targets: ``(emb, emb_flip)`` float32 (N, D) arrays aligned with the source rows.
        drop_remainder: drop the last partial batch of an epoch (plain batches).
        cache: False; True (decoded crops in memory: N*S*S*3 bytes); or a file path.
        workers: decoding threads (default: CPU count, at most 16).
        check: refuse non-square (raw, unaligned) images up front (see ``check_crops``).
    """

    def __init__(self, source, batch_size=128, image_size=112, shuffle=True, seed=0,
                 augment=None, sampler=None, targets=None, drop_remainder=True, cache=False,
                 workers=None, check=True):
        self.source = open_source(source)
        self.image_size = int(image_size)
        self.batch_size = sampler.batch_size if sampler is not None else int(batch_size)
        if self.batch_size < 1:
            raise DataError(f"batch_size must be >= 1; received {batch_size}")
        if len(self.source) < (1 if not drop_remainder or sampler else self.batch_size):
            raise DataError(f"{self.source.description}: {len(self.source)} images, fewer than "
                            f"one batch of {self.batch_size}")
        self.shuffle, self.seed, self.sampler = shuffle, int(seed), sampler
        self.augment = augment if augment is not None else AugmentConfig.off()
        self.drop_remainder = drop_remainder
        self.targets = None
        if targets is not None:
            emb, emb_flip = (np.asarray(t, dtype=np.float32) for t in targets)
            if emb.shape != emb_flip.shape or len(emb) != len(self.source):
                raise DataError(f"targets of shape {emb.shape}/{emb_flip.shape} do not match "
                                f"{len(self.source)} images")
            self.targets = (emb, emb_flip)
        self.labels = np.asarray(self.source.labels, dtype=np.int64)
        self.workers = int(workers or min(16, os.cpu_count() or 1))
        self.cache = None
        if cache:
            self.cache = DecodedCache(len(self.source), self.image_size,
                                      None if cache is True else cache)
        self.skipped = SkipCounter()
        if check:
            check_crops(self.source, self.image_size)

    @property
    def num_classes(self):
        return self.source.num_classes

    @property
    def steps_per_epoch(self):
        if self.sampler is not None:
            return len(self.sampler)
        n = len(self.source)
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    # 1. Plan ------------------------------------------------------------------------------
    def epoch_plan(self, epoch):
        """The batches of ``epoch``: list of int64 index arrays."""
        if self.sampler is not None:
            return self.sampler.epoch(epoch)
        n = len(self.source)
        order = (np.random.default_rng([self.seed, int(epoch)]).permutation(n)
                 if self.shuffle else np.arange(n))
        return [order[i:i + self.batch_size] for i in range(0, self.steps_per_epoch
                                                             * self.batch_size, self.batch_size)]

    def _plan(self, epochs, start_epoch, start_batch):
        epoch = int(start_epoch)
        while epochs is None or epoch < start_epoch + epochs:
            for b, idx in enumerate(self.epoch_plan(epoch)):
                if epoch == start_epoch and b < start_batch:
                    continue
                yield epoch, b, idx
            epoch += 1

    # 2. Assemble --------------------------------------------------------------------------
    def _face(self, i):
        if self.cache is not None:
            rgb = self.cache.get(i)
            if rgb is not None:
                return rgb
        rgb = load_face(self.source, i, self.image_size, self.skipped)
        if rgb is not None and self.cache is not None:
            self.cache.put(i, rgb)
        return rgb

    def assemble(self, indices, epoch, batch):
        """One batch as numpy: (images float32, labels int32[, targets float32]).

        Returns a batch with 0 rows when no image of it could be read.
        """
        indices = np.array(indices, dtype=np.int64)  # a copy: refilling edits it
        faces = [self._face(int(i)) for i in indices]
        ok = [j for j, f in enumerate(faces) if f is not None]
        s = self.image_size
        if not ok:
            empty = (np.zeros((0, s, s, 3), np.float32), np.zeros((0,), np.int32))
            dim = self.targets[0].shape[1] if self.targets is not None else None
            return empty + ((np.zeros((0, dim), np.float32),) if dim is not None else ())
        labels = self.labels[indices]
        for j, face in enumerate(faces):
            if face is None:  # refill: same identity first, else any readable image
                same = [m for m in ok if labels[m] == labels[j]]
                donor = (same or ok)[j % len(same or ok)]
                indices[j], faces[j] = indices[donor], faces[donor]
        labels = self.labels[indices]
        images = np.empty((len(indices), s, s, 3), dtype=np.uint8)
        flips = np.zeros(len(indices), dtype=bool)
        base = int(batch) * self.batch_size
        for j, face in enumerate(faces):
            if self.augment.enabled:
                face, flips[j] = augment_face(face, image_rng(self.seed, epoch, base + j),
                                              self.augment)
            images[j] = face
        out = (normalize_face(images), labels.astype(np.int32))
        if self.targets is not None:
            out += (select_targets(self.targets[0][indices], self.targets[1][indices], flips),)
        return out

    # 3. Backends --------------------------------------------------------------------------
    def numpy_batches(self, epochs=None, start_epoch=0, start_batch=0, prefetch=None):
        """Iterate numpy batches, assembled ahead by a background thread pool.

        Args:
            epochs: number of epochs; None runs forever.
            start_epoch, start_batch: where to start (resuming a killed run).
            prefetch: batches in flight (default 2 x workers).
        Yields:
            tuples of numpy arrays (see the module docstring).
        """
        depth = int(prefetch or 2 * self.workers)
        plan = self._plan(epochs, start_epoch, start_batch)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tfface-data")
        pending = deque()
        try:
            for item in plan:
                pending.append(pool.submit(self.assemble, item[2], item[0], item[1]))
                if len(pending) >= depth:
                    out = pending.popleft().result()
                    if len(out[0]):
                        yield out
            while pending:
                out = pending.popleft().result()
                if len(out[0]):
                    yield out
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def tf_dataset(self, epochs=None, start_epoch=0, start_batch=0):
        """The same batches as a ``tf.data.Dataset`` (parallel assembly and prefetch).

        Decoding goes through the shared numpy path (``tf.numpy_function``), which keeps both
        backends identical and counts unreadable images; images are cached below the
        per-epoch shuffle by ``cache=`` (tf.data's own ``cache()`` would freeze the order).
        """
        import tensorflow as tf

        lock = threading.Lock()

        def plan():
            with lock:
                yield from self._plan(epochs, start_epoch, start_batch)

        ds = tf.data.Dataset.from_generator(plan, output_signature=(
            tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.int64),
            tf.TensorSpec((None,), tf.int64)))
        with_targets = self.targets is not None
        tout = [tf.float32, tf.int32] + ([tf.float32] if with_targets else [])
        s = self.image_size
        dim = self.targets[0].shape[1] if with_targets else None

        def load(epoch, batch, idx):
            out = tf.numpy_function(lambda e, b, i: self.assemble(i, int(e), int(b)),
                                    [epoch, batch, idx], tout, stateful=False)
            out[0].set_shape((None, s, s, 3))
            out[1].set_shape((None,))
            if with_targets:
                out[2].set_shape((None, dim))
            return tuple(out)

        ds = ds.map(load, num_parallel_calls=self.workers, deterministic=True)
        ds = ds.filter(lambda *batch: tf.shape(batch[0])[0] > 0)
        return ds.prefetch(tf.data.AUTOTUNE)


def numpy_batches(source, epochs=None, start_epoch=0, start_batch=0, **kwargs):
    """Shortcut: ``FacePipeline(source, **kwargs).numpy_batches(...)``; see FacePipeline."""
    return FacePipeline(source, **kwargs).numpy_batches(epochs, start_epoch, start_batch)


def tf_dataset(source, epochs=None, start_epoch=0, start_batch=0, **kwargs):
    """Shortcut: ``FacePipeline(source, **kwargs).tf_dataset(...)``; see FacePipeline."""
    return FacePipeline(source, **kwargs).tf_dataset(epochs, start_epoch, start_batch)
