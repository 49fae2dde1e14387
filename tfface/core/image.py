"""The one image loader: path, bytes, file object or array in; RGB uint8 (H, W, 3) out.

Pillow decodes (EXIF orientation, palette, CMYK JPEG, 16-bit PNG, grayscale, alpha); every
failure becomes :class:`tfface.errors.ImageError` naming the input, never a bare decoder error.
"""

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tfface.errors import ImageError

# Refuse absurd images (decompression bombs) with our error rather than Pillow's warning.
MAX_PIXELS = 20000 * 20000


def describe_source(source):
    """Short human name of an image source, for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def _to_uint8(arr):
    """Scale an integer or float array to uint8 0..255."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        top = float(arr.max()) if arr.size else 0.0
        if top > 255:  # 16-bit (or wider) data: scale the full 16-bit range to 8 bits
            return np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        return np.clip(arr, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("array contains NaN or infinity")
        scale = 255.0 if arr.size and float(arr.max()) <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    raise ValueError(f"unsupported array dtype {arr.dtype}")


def _composite_alpha(rgb, alpha):
    """Blend over white: transparent parts of cut-out photos are usually shown on white."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    out = rgb.astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def array_to_rgb(arr):
    """Normalise an in-memory image array (gray, gray+alpha, RGB, RGBA) to RGB uint8.

    Arrays are taken as RGB (not OpenCV's BGR). Float arrays in 0..1 are scaled by 255.
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        gray = _to_uint8(arr)
        return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
    if arr.ndim != 3 or arr.shape[-1] not in (2, 3, 4):
        raise ValueError(f"expected (H, W), (H, W, 1|2|3|4) image array; received shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"empty image array {arr.shape}")
    arr = _to_uint8(arr)
    if arr.shape[-1] == 2:
        return _composite_alpha(np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1])
    if arr.shape[-1] == 4:
        return _composite_alpha(arr[..., :3], arr[..., 3])
    return np.ascontiguousarray(arr)


def _pil_to_rgb(img):
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("RGB",):
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return array_to_rgb(np.asarray(img))
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        return array_to_rgb(np.asarray(img.convert("RGBA")))
    # L, 1, CMYK, YCbCr, LAB, HSV and the rest: Pillow's conversions are correct for these.
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_image(source):
    """Load any supported image source as RGB uint8 (H, W, 3).

    Args:
        source: file path (str or PathLike), encoded bytes, binary file object, or a numpy
            array (gray, RGB or RGBA; taken as RGB order).
    Raises:
        ImageError: missing, empty, truncated, undecodable or zero-sized input.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        try:
            return array_to_rgb(source)
        except ValueError as err:
            raise ImageError(f"{name}: {err}") from err
    try:
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if not os.path.exists(path):
                raise ImageError(f"{path}: no such file")
            if os.path.isdir(path):
                raise ImageError(f"{path}: is a directory, not an image")
            if os.path.getsize(path) == 0:
                raise ImageError(f"{path}: empty file")
            with open(path, "rb") as fh:
                data = fh.read()
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        elif hasattr(source, "read"):
            data = source.read()
        else:
            raise ImageError(f"{name}: unsupported image source type {type(source).__name__}")
        if not data:
            raise ImageError(f"{name}: empty input")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(f"{name}: image too large ({img.width}x{img.height})")
                img.load()
                rgb = _pil_to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError as err:
        raise ImageError(f"{name}: not an image or unsupported format") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, EOFError) as err:
        reason = str(err) or type(err).__name__
        raise ImageError(f"{name}: cannot decode image ({reason})") from err
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError(f"{name}: zero-sized image")
    return rgb


def encode_image(rgb, fmt="png", quality=95):
    """Encode RGB uint8 to bytes in ``fmt`` ("png", "jpg"/"jpeg" or "webp")."""
    fmt = fmt.lower().lstrip(".")
    pil_fmt = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}.get(fmt)
    if pil_fmt is None:
        raise ValueError(f"unsupported output format {fmt!r}; choose png, jpg or webp")
    buf = io.BytesIO()
    kwargs = {"quality": quality} if pil_fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format=pil_fmt, **kwargs)
    return buf.getvalue()


def save_image_atomic(path, rgb, quality=95):
    """Write RGB uint8 to ``path`` via a temp file and rename, so no partial file is left."""
    path = os.fspath(path)
    data = encode_image(rgb, os.path.splitext(path)[1] or "png", quality=quality)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.part-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
