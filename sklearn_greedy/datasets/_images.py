"""Decoding one image file, shared by the image-folder and CIFAR-10 loaders.

A file that cannot be decoded is not an error of the whole load: the loaders skip it
and say so in one warning that names it.
"""

from __future__ import annotations

import warnings

import numpy as np

# what PIL raises on a file it cannot decode: not an image, truncated, corrupt, or larger
# than Image.MAX_IMAGE_PIXELS (a decompression bomb, refused before it is decoded)
_DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, MemoryError)

_SHOWN = 5


class UnreadableImage(Exception):
    """A file the loaders skip; the message says why."""


def decode_image(source, *, mode: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode ``source`` (a path or a binary file object) into a uint8 array.

    Returns an array of shape (height, width, 3) for ``mode="RGB"``, (height, width) for
    ``mode="L"``, resized to ``size`` (height, width) with bilinear interpolation when
    given. 16-bit grey images are scaled to 8 bits (65535 becomes 255), not clipped.
    Raises :class:`UnreadableImage` for anything PIL cannot decode, including an image
    larger than ``PIL.Image.MAX_IMAGE_PIXELS``, which is refused before decoding.
    """
    Image = pil_image()

    bomb_errors = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; a loader that reads
            # folders it did not write should refuse both
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                image = _eight_bit(image)
                image = image.convert(mode)
                if size is not None:
                    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.uint8)
    except bomb_errors as exc:
        raise UnreadableImage(f"decompression bomb: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise UnreadableImage(str(exc) or type(exc).__name__) from exc


def pil_image():
    """``PIL.Image``, or an ImportError that says how to get it: image files need Pillow,
    which the package does not require (arrays and IDX files do not)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "Reading image files requires Pillow; install it with `pip install pillow` "
            '(or `pip install "sklearn-greedy[images]"`).'
        ) from exc
    return Image


def _eight_bit(image):
    """16-bit grey images (PNG, TIFF) scaled to 8 bits: PIL's own conversion clips them at
    255, so that every value above 255 would become white."""
    Image = pil_image()

    if image.mode not in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return image
    wide = np.asarray(image).astype(np.float64)
    if image.mode == "F" or wide.min() < 0 or wide.max() > 65535:
        raise UnreadableImage(
            f"a {image.mode!r} image (32-bit or floating point values) has no 8-bit reading; "
            "convert it to 8 or 16 bits"
        )
    return Image.fromarray(np.round(wide * (255 / 65535)).astype(np.uint8), mode="L")


def warn_skipped(skipped: list[tuple[str, str]], *, stacklevel: int = 3) -> None:
    """One UserWarning for all the files a loader skipped: ``(name, reason)`` pairs."""
    if not skipped:
        return
    shown = "; ".join(f"{name} ({reason})" for name, reason in skipped[:_SHOWN])
    more = f"; and {len(skipped) - _SHOWN} more" if len(skipped) > _SHOWN else ""
    warnings.warn(
        f"Skipped {len(skipped)} files that are not readable images: {shown}{more}.",
        UserWarning,
        stacklevel=stacklevel,
    )
