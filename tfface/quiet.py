"""Import TensorFlow without its start-up chatter on stderr.

TensorFlow's C++ logging prints "oneDNN custom operations are on..." at import even when
TF_CPP_MIN_LOG_LEVEL is set from Python (it is read too early); CLI users should see one line
per problem, not library noise. Real import errors still propagate.
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def silenced_stderr():
    """Redirect the process's file descriptor 2 to /dev/null for the duration."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd (e.g. captured by a test runner)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Import and return tensorflow quietly (an ImportError still surfaces)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with silenced_stderr():
        import tensorflow as tf
    return tf
