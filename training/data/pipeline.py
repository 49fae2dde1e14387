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
3. **Run ahead**: numpy: a thread pool (decoders and OpenCV release the GIL) or, with
   ``processes=N``, spawned worker processes assemble the next batches in the background;
   tf.data: ``from_generator(plan)`` -> ``map(numpy_function(assemble), num_parallel_calls)``
   -> ``prefetch`` (or the process-pool iterator through ``from_generator``).

Unreadable images (missing, empty, truncated, not an image, corrupt record) are skipped and
counted in :attr:`FacePipeline.skipped`, never fatal. The slot of a skipped image is refilled
with a copy of another image of the same identity in the batch (else any readable image of
the batch), so batches keep a fixed shape (one JAX compilation) and P x K composition; a
batch with no readable image is dropped.

Batches: ``(images float32 (B, S, S, 3), labels int32 (B,))``, plus ``targets float32 (B, D)``
when teacher targets are given (the ``emb_flip`` row for a mirrored image).
"""

import multiprocessing as mp
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial

import numpy as np

from tfface.core.preprocess import normalize_face
from tfface.errors import DataError
from training.data.augment import AugmentConfig, augment_face, image_rng
from training.data.cache import DecodedCache, source_fingerprint
from training.data.sampler import PKSampler
from training.data.sources import SkipCounter, check_crops, load_face, open_source
from training.data.teacher import select_targets


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
        pk: ``(P, K)``: shortcut building ``PKSampler(labels, P, K, seed, oversample)``.
        oversample: with ``pk``, reuse images of identities with fewer than K.
        targets: ``(emb, emb_flip)`` float32 (N, D) arrays aligned with the source rows.
        drop_remainder: drop the last partial batch of an epoch (plain batches).
        cache: False; True (decoded crops in memory: N*S*S*3 bytes); or a file path.
        workers: decoding threads (default: CPU count, at most 16).
        check: refuse non-square (raw, unaligned) images up front (see ``check_crops``).
    """

    def __init__(self, source, batch_size=128, image_size=112, shuffle=True, seed=0,
                 augment=None, sampler=None, targets=None, drop_remainder=True, cache=False,
                 workers=None, check=True, pk=None, oversample=False):
        self.source = open_source(source)
        if pk is not None:
            if sampler is not None:
                raise DataError("pass either sampler or pk, not both")
            sampler = PKSampler(self.source.labels, pk[0], pk[1], seed=seed,
                                oversample=oversample)
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
            path = None if cache is True else cache
            self.cache = DecodedCache(len(self.source), self.image_size, path,
                                      source_fingerprint(self.source) if path else "")
        self.skipped = SkipCounter()
        if check:
            check_crops(self.source, self.image_size)

    def __getstate__(self):
        # What worker processes need: no lock-holding counter, no teacher targets.
        state = dict(self.__dict__)
        state["skipped"], state["targets"] = None, None
        return state

    @property
    def num_classes(self):
        return self.source.num_classes

    def describe(self):
        """JSON-ready summary for model cards and run configs."""
        out = {"source": self.source.description, "kind": self.source.kind,
               "num_images": len(self.source), "num_classes": int(self.num_classes),
               "image_size": self.image_size, "batch_size": self.batch_size,
               "seed": self.seed, "augment": self.augment.to_dict(),
               "skipped_images": self.skipped.count}
        if self.sampler is not None:
            out["pk"] = [self.sampler.p, self.sampler.k]
            out["excluded_identities"] = len(self.sampler.excluded)
        return out

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
    def _face(self, i, skipped):
        if self.cache is not None:
            rgb = self.cache.get(i)
            if rgb is not None:
                return rgb
        rgb = load_face(self.source, i, self.image_size, skipped)
        if rgb is not None and self.cache is not None:
            self.cache.put(i, rgb)
        return rgb

    def assemble_uint8(self, indices, epoch, batch, skipped=None):
        """Decode, refill and augment one batch (the part worker processes run).

        Returns:
            (images uint8 (B, S, S, 3), indices int64 (B,) after refilling, flipped bool (B,));
            B is 0 when no image of the batch could be read.
        """
        skipped = self.skipped if skipped is None else skipped
        indices = np.array(indices, dtype=np.int64)  # a copy: refilling edits it
        faces = [self._face(int(i), skipped) for i in indices]
        ok = [j for j, f in enumerate(faces) if f is not None]
        s = self.image_size
        if not ok:
            return np.zeros((0, s, s, 3), np.uint8), indices[:0], np.zeros(0, bool)
        labels = self.labels[indices]
        for j, face in enumerate(faces):
            if face is None:  # refill: same identity first, else any readable image
                same = [m for m in ok if labels[m] == labels[j]]
                donor = (same or ok)[j % len(same or ok)]
                indices[j], faces[j] = indices[donor], faces[donor]
        images = np.empty((len(indices), s, s, 3), dtype=np.uint8)
        flips = np.zeros(len(indices), dtype=bool)
        base = int(batch) * self.batch_size
        for j, face in enumerate(faces):
            if self.augment.enabled:
                face, flips[j] = augment_face(face, image_rng(self.seed, epoch, base + j),
                                              self.augment)
            images[j] = face
        return images, indices, flips

    def finish(self, images, indices, flips):
        """Normalise (``normalize_face``) and attach labels and targets."""
        out = (normalize_face(images), self.labels[indices].astype(np.int32))
        if self.targets is not None:
            emb, emb_flip = self.targets
            out += (select_targets(emb[indices], emb_flip[indices], flips)
                    if len(indices) else np.zeros((0, emb.shape[1]), np.float32),)
        return out

    def assemble(self, indices, epoch, batch):
        """One batch as numpy: (images float32, labels int32[, targets float32])."""
        return self.finish(*self.assemble_uint8(indices, epoch, batch))

    # 3. Backends --------------------------------------------------------------------------
    def numpy_batches(self, epochs=None, start_epoch=0, start_batch=0, prefetch=None,
                      processes=0):
        """Iterate numpy batches, assembled ahead in the background.

        Args:
            epochs: number of epochs; None runs forever.
            start_epoch, start_batch: where to start (resuming a killed run).
            prefetch: batches in flight (default 2 x workers).
            processes: 0 assembles in ``workers`` threads of this process (decoders release
                the GIL; enough for a few cores). N > 0 uses N spawned worker processes,
                which scale past the GIL on many-core GPU hosts; they return uint8 batches
                and this process normalises them. ``cache=True`` is per process, so with
                processes pass a cache file path (shared through the page cache) or none.
        Yields:
            tuples of numpy arrays (see the module docstring).
        """
        if processes and self.cache is not None and self.cache.path is None:
            raise DataError("cache=True keeps crops inside one process; with processes > 0 "
                            "pass cache=<file path> or cache=False")
        depth = int(prefetch or 2 * (processes or self.workers))
        plan = self._plan(epochs, start_epoch, start_batch)
        if processes:
            pool = ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn"),
                                       initializer=_worker_init, initargs=(self,))
            submit = partial(pool.submit, _worker_assemble)
        else:
            pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tfface-data")
            submit = partial(pool.submit, self.assemble_uint8)
        pending = deque()

        def take():
            images, indices, flips, *failures = pending.popleft().result()
            for key, name, reason in (failures[0] if failures else ()):
                self.skipped.add_once(key, name, reason)
            return self.finish(images, indices, flips)

        try:
            for epoch, batch, indices in plan:
                pending.append(submit(indices, epoch, batch))
                if len(pending) >= depth:
                    out = take()
                    if len(out[0]):
                        yield out
            while pending:
                out = take()
                if len(out[0]):
                    yield out
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def tf_dataset(self, epochs=None, start_epoch=0, start_batch=0, processes=0):
        """The same batches as a ``tf.data.Dataset`` (parallel assembly and prefetch).

        Decoding goes through the shared numpy path, which keeps both backends identical and
        counts unreadable images: ``tf.numpy_function(assemble)`` mapped over the plan with
        ``workers`` parallel calls, or, with ``processes=N``, the process-pool iterator of
        :meth:`numpy_batches` fed through ``from_generator`` (for many-core hosts, where
        the GIL caps threads). Images are cached below the per-epoch shuffle by ``cache=``
        (tf.data's own ``cache()`` would freeze the order).

        Elements: ``(images, labels)`` or ``(images, labels, targets)``, as in numpy.
        """
        import tensorflow as tf

        with_targets = self.targets is not None
        s = self.image_size
        dim = self.targets[0].shape[1] if with_targets else None
        specs = (tf.TensorSpec((None, s, s, 3), tf.float32), tf.TensorSpec((None,), tf.int32))
        specs += (tf.TensorSpec((None, dim), tf.float32),) if with_targets else ()
        if processes:
            ds = tf.data.Dataset.from_generator(
                lambda: self.numpy_batches(epochs, start_epoch, start_batch,
                                           processes=processes), output_signature=specs)
            return ds.prefetch(tf.data.AUTOTUNE)

        def plan():
            yield from self._plan(epochs, start_epoch, start_batch)

        ds = tf.data.Dataset.from_generator(plan, output_signature=(
            tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.int64),
            tf.TensorSpec((None,), tf.int64)))

        def load(epoch, batch, idx):
            out = tf.numpy_function(lambda e, b, i: self.assemble(i, int(e), int(b)),
                                    [epoch, batch, idx], [sp.dtype for sp in specs],
                                    stateful=True)
            for tensor, spec in zip(out, specs):
                tensor.set_shape(spec.shape)
            return tuple(out)

        ds = ds.map(load, num_parallel_calls=self.workers, deterministic=True)
        ds = ds.filter(lambda *batch: tf.shape(batch[0])[0] > 0)
        return ds.prefetch(tf.data.AUTOTUNE)


class _FailureList:
    """Stands in for SkipCounter inside a worker process: failures go back with the batch."""

    def __init__(self):
        self.items = []

    def add_once(self, key, name, reason):
        self.items.append((key, name, reason))


_WORKER = {}


def _worker_init(pipeline):
    _WORKER["pipeline"] = pipeline


def _worker_assemble(indices, epoch, batch):
    failures = _FailureList()
    images, indices, flips = _WORKER["pipeline"].assemble_uint8(indices, epoch, batch, failures)
    return images, indices, flips, failures.items


def numpy_batches(source, epochs=None, start_epoch=0, start_batch=0, **kwargs):
    """Shortcut: ``FacePipeline(source, **kwargs).numpy_batches(...)``; see FacePipeline."""
    return FacePipeline(source, **kwargs).numpy_batches(epochs, start_epoch, start_batch)


def tf_dataset(source, epochs=None, start_epoch=0, start_batch=0, **kwargs):
    """Shortcut: ``FacePipeline(source, **kwargs).tf_dataset(...)``; see FacePipeline."""
    return FacePipeline(source, **kwargs).tf_dataset(epochs, start_epoch, start_batch)
