"""tfface-video --db bank.db [--camera N | FILE]: recognise faces in a camera stream or video.

Detects and identifies every k frames (--detect-every) and follows the faces with optical flow
in between, drawing boxes, names and FPS. --out writes the annotated video; --headless prints
one JSON line per frame and opens no window (the default when there is no display).
"""

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

from tfface.cli.common import add_model_options, make_verifier, report_error
from tfface.errors import TFFaceError

PROG = "tfface-video"


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="facebank file made by tfface-enroll")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, help="camera index (e.g. 0)")
    src.add_argument("video", nargs="?", help="video file")
    p.add_argument("--out", help="write the annotated video here (.mp4 or .avi)")
    p.add_argument("--detect-every", type=int, default=5,
                   help="run detection and recognition every K frames, track in between")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--headless", action="store_true",
                   help="print per-frame results as JSON lines; never open a window")
    p.add_argument("--show", action="store_true", help="show a window (needs a display)")
    add_model_options(p)
    return p


def annotate(frame_bgr, tracked, fps):
    for box, match in tracked:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        color = (0, 200, 0) if match.known else (0, 0, 230)
        cv2.rectangle(frame_bgr, (x1, y1), (x2, y2), color, 2)
        cv2.putText(frame_bgr, f"{match.name} {match.similarity:.2f}", (x1, max(12, y1 - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    cv2.putText(frame_bgr, f"{fps:.1f} FPS", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (255, 255, 255), 2, cv2.LINE_AA)
    return frame_bgr


def open_capture(args):
    if args.camera is not None:
        cap = cv2.VideoCapture(args.camera)
        what = f"camera {args.camera}"
    else:
        if not os.path.isfile(args.video):
            raise TFFaceError(f"video file not found: {args.video}")
        cap = cv2.VideoCapture(args.video)
        what = args.video
    if not cap.isOpened():
        raise TFFaceError(f"cannot open {what}")
    return cap, what


def run(args):
    from tfface.facebank import Facebank
    from tfface.tracking import BoxTracker

    if args.detect_every < 1:
        raise TFFaceError("--detect-every must be at least 1")
    if not os.path.isfile(args.db):
        raise TFFaceError(f"facebank not found: {args.db}")
    cap, what = open_capture(args)
    verifier = make_verifier(args)
    bank = Facebank(args.db, model_id=verifier.model_id)
    show = args.show and not args.headless and bool(os.environ.get("DISPLAY"))
    writer, tracker = None, BoxTracker()
    n, t_start, fps = 0, time.perf_counter(), 0.0
    try:
        while args.max_frames is None or n < args.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            t0 = time.perf_counter()
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            detected = n % args.detect_every == 0
            if detected:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                found = verifier.embed_faces(rgb)
                matches = bank.search(np.stack([e for _, e in found]), verifier.threshold) \
                    if found else []
                tracker.reset(gray, [f.box for f, _ in found], matches)
                tracked = list(zip(tracker.boxes, tracker.labels))
            else:
                tracked = tracker.update(gray)
            dt = time.perf_counter() - t0
            fps = 1.0 / dt if fps == 0.0 else 0.9 * fps + 0.1 / max(dt, 1e-6)
            if args.headless:
                print(json.dumps({"frame": n, "detected": detected, "faces": [
                    {"box": [round(float(v), 1) for v in box], **m.to_dict()}
                    for box, m in tracked]}), flush=True)
            if args.out or show:
                annotate(frame, tracked, fps)
            if args.out:
                if writer is None:
                    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if args.out.endswith(".mp4")
                                                      else "MJPG"))
                    rate = cap.get(cv2.CAP_PROP_FPS) or 25.0
                    writer = cv2.VideoWriter(args.out, fourcc, rate,
                                             (frame.shape[1], frame.shape[0]))
                    if not writer.isOpened():
                        raise TFFaceError(f"cannot write video {args.out}")
                writer.write(frame)
            if show:
                cv2.imshow(PROG, frame)
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                    break
            n += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if show:
            cv2.destroyAllWindows()
    elapsed = time.perf_counter() - t_start
    if n == 0:
        raise TFFaceError(f"no frames could be read from {what}")
    print(f"{PROG}: {n} frames in {elapsed:.1f} s ({n / elapsed:.1f} FPS overall)"
          + (f"; annotated video in {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except Exception as err:  # noqa: BLE001 - reported in one line
        return report_error(PROG, err, args.debug)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
