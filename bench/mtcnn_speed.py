"""Detection time of the TFLite MTCNN (tflite.mtcnn) against the mtcnn package, same run.

Run by hand (not in CI; the mtcnn package needs TensorFlow)::

    .venv/bin/python bench/mtcnn_speed.py [--data ../shared/data] [--images 10] [--repeat 5]

Prints the seconds per image (best of ``--repeat`` passes, so that other load on a shared
machine inflates it least) for 250x250 photos (CelebA/LFW crops) and for 640x480
scenes (two photos side by side on a 640x480 canvas), for 1 and 2 interpreter threads, the
speed ratio, and the box/landmark deviation between the two detectors.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def scene_640x480(left, right):
    """Two 250x250 photos side by side, scaled to 640 wide, centred on a grey 640x480 canvas."""
    pair = np.concatenate([left, right], axis=1)
    pair = cv2.resize(pair, (640, 320), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[80:400] = pair
    return canvas


def time_detector(detector, images, repeat):
    """Best over ``repeat`` passes of the mean seconds per image."""
    detector.detect_raw(images[0], 20)  # warm-up (first interpreter allocation)
    passes = []
    for _ in range(repeat):
        start = time.perf_counter()
        for rgb in images:
            detector.detect_raw(rgb, 20)
        passes.append((time.perf_counter() - start) / len(images))
    return min(passes)


def deviation(a, b, images):
    """Max and mean absolute box/landmark difference (pixels) where both find the same count."""
    box_dev, lm_dev, mismatched = [], [], 0
    for rgb in images:
        ba, _, la = a.detect_raw(rgb, 20)
        bb, _, lb = b.detect_raw(rgb, 20)
        if len(ba) != len(bb):
            mismatched += 1
            continue
        box_dev.append(np.abs(ba - bb).ravel())
        lm_dev.append(np.abs(la - lb).ravel())
    boxes = np.concatenate(box_dev) if box_dev else np.zeros(1)
    lms = np.concatenate(lm_dev) if lm_dev else np.zeros(1)
    return boxes.max(), boxes.mean(), lms.max(), lms.mean(), mismatched


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from tfface.core.image import load_image
    from tfface.detect import MTCNNDetector
    from tflite.mtcnn import TFLiteMTCNNDetector

    data = Path(args.data)
    paths = sorted(data.glob("celeba/*/*.jpg"))[: args.images // 2] + \
        sorted(data.glob("lfw/images/*/*.jpg"))[: args.images - args.images // 2]
    if len(paths) < 2:
        print(f"mtcnn_speed: error: no photos under {data}", file=sys.stderr)
        return 2
    small = [load_image(p) for p in paths]
    large = [scene_640x480(small[i], small[(i + 1) % len(small)]) for i in range(len(small))]

    package = MTCNNDetector()
    results = {}
    for name, images in (("250x250", small), ("640x480", large)):
        results[(name, "mtcnn package")] = time_detector(package, images, args.repeat)
        for threads in (1, 2):
            lite = TFLiteMTCNNDetector(num_threads=threads)
            results[(name, f"tflite {threads} thr")] = time_detector(lite, images, args.repeat)

    print(f"{'image':8s} {'detector':16s} {'s/image':>9s} {'speed-up':>9s}")
    for (name, det), secs in results.items():
        ratio = results[(name, "mtcnn package")] / secs
        print(f"{name:8s} {det:16s} {secs:9.4f} {ratio:8.1f}x")
    lite = TFLiteMTCNNDetector()
    for name, images in (("250x250", small), ("640x480", large)):
        bmax, bmean, lmax, lmean, bad = deviation(lite, package, images)
        print(f"{name}: box |diff| max {bmax:.4f} mean {bmean:.4f} px; landmarks max "
              f"{lmax:.4f} mean {lmean:.4f} px; images with a different face count: {bad}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
