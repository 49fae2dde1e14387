"""Project exceptions: every user-facing failure is one of these, with a message that names
the input and says what to do. They subclass ValueError so callers catching ValueError work."""


class TFFaceError(ValueError):
    """Base class of all tfface errors."""


class ImageError(TFFaceError):
    """An image could not be read: missing, empty, truncated, or not an image."""


class NoFaceError(TFFaceError):
    """No face (passing the score and size limits) was found in an image."""


class ModelError(TFFaceError):
    """A model file is missing, of an unknown kind, or does not match what is expected."""


class DataError(TFFaceError):
    """A data set, pairs file or record file is malformed."""
