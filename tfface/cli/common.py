"""Shared pieces of the command-line programs: model options and error reporting."""

import sys

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def add_model_options(p):
    p.add_argument("--model", default=None,
                   help="model file (.tflite or .keras) or shipped model name; default: the "
                   "shipped default model")
    p.add_argument("--threshold", type=float, default=None,
                   help="cosine-similarity threshold (default: the model card's)")
    p.add_argument("--detector", choices=("auto", "tflite", "mtcnn"), default="auto",
                   help="face detector (auto: the TensorFlow-free TFLite MTCNN)")
    p.add_argument("--threads", type=int, default=None, help="TFLite interpreter threads")
    p.add_argument("--min-score", type=float, default=0.9, help="minimum face-detection score")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def make_verifier(args):
    from tfface.verifier import FaceVerifier

    return FaceVerifier(args.model, threshold=args.threshold, detector=args.detector,
                        num_threads=args.threads, min_score=args.min_score)


def report_error(prog, err, debug):
    """One line on stderr (the traceback only with --debug); returns exit status 2."""
    if debug:
        raise err
    from tfface.errors import TFFaceError

    msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if not isinstance(err, TFFaceError):
        msg = f"{type(err).__name__}: {msg} (run with --debug for the traceback)"
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return 2
