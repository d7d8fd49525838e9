"""Image input hygiene: whatever a webcam, a browser or a client sends -> a clean RGB frame.

Accepted inputs (:func:`decode_image`):

* **bytes** (``bytes`` / ``bytearray`` / ``memoryview``) or a binary file object holding a
  JPEG, PNG or WebP image (GIF and BMP are accepted too; of an animation only the first frame
  is used).  Other formats (TIFF, ICO, HEIC, AVIF, SVG, PDF, ...) are refused by name;
* a **path** (``str`` / ``os.PathLike``) to such a file;
* a **data URL** (``str`` starting with ``data:image/``, what a browser canvas' ``toDataURL()``
  or a webcam snapshot gives), base64- or percent-encoded;
* a **numpy array** as a browser webcam / Gradio ``Image(type="numpy")`` gives it: ``uint8``
  ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` (RGB, *not* OpenCV's BGR) or ``(H, W, 4)`` (RGBA);
  ``float`` arrays with values in [0, 1] and ``uint16`` arrays are converted to 8 bits;
* a **PIL image** (any format and mode Pillow can convert to RGB);
* an :class:`ImageFrame` (returned unchanged).

Encoded images are opened with Pillow (imported lazily, so importing this module stays cheap),
their size is checked **from the header, before any pixel is decoded** (a 100 kB PNG can claim
30000x30000 pixels and expand to gigabytes: a "decompression bomb"), the EXIF orientation a phone
camera writes is applied, and the pixels are converted to 8-bit RGB.  Transparency is composited
onto white (a transparent background becomes white rather than whatever colour happens to be
stored under it).  Images larger than ``work_side`` on their long side are downscaled (large
JPEGs already while decoding, via libjpeg's DCT scaling) so that face detection has a bounded
cost; :attr:`ImageFrame.scale` maps original pixel coordinates into the frame.

Input that cannot be used raises an :class:`ImageError` (an
:class:`~empathic_agent.errors.InputError`) with a message fit for a person:

* :class:`EmptyImageError` — ``None``, zero bytes, an empty data URL or a zero-size array;
* :class:`ImageDecodeError` — a missing file, corrupt or truncated data, not an image, an
  unsupported format or colour mode, invalid base64, an array of the wrong dtype/shape or with
  NaN/infinite values;
* :class:`ImageTooLargeError` — more than ``max_bytes`` encoded bytes, more than ``max_pixels``
  pixels or a side longer than ``max_side`` (checked before decoding; Pillow's own
  decompression-bomb guard is turned into this error too);
* :class:`ImageTooSmallError` — a side shorter than ``min_side`` (too small to hold a face).

Limits (:class:`ImageLimits`, documented defaults): 10 MB encoded, 40 megapixels, 12000 pixels
on either side, at least 16 pixels on each side, working frames at most 1280 pixels on the long
side.  ``max_bytes`` applies to encoded input only (a raw 4K webcam frame is 25 MB of pixels and
is bounded by ``max_pixels`` instead).  Decoding is blocking (run it off the event loop).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import struct
import sys
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Union
from urllib.parse import unquote_to_bytes

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import InputError

if TYPE_CHECKING:  # Pillow is imported lazily at run time (see the module docstring)
    import PIL.Image

__all__ = [
    "ImageLimits",
    "ImageFrame",
    "ImageSource",
    "ImageError",
    "EmptyImageError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "decode_image",
]

#: Pillow decoders allowed to parse encoded input (``Image.open(formats=...)``).
_OPEN_FORMATS: Final[tuple[str, ...]] = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
#: Formats an opened image may report.  MPO is the multi-picture JPEG some cameras and phones
#: write: Pillow's JPEG decoder opens it and reports it as MPO (the first picture is a JPEG).
_ALLOWED_FORMATS: Final[frozenset[str]] = frozenset(_OPEN_FORMATS) | {"MPO"}
_ALLOWED_TEXT: Final[str] = "JPEG, PNG, WebP, GIF or BMP"

# ITU-R BT.601 luma weights (0.299, 0.587, 0.114) in OpenCV's 15-bit fixed point: gray() is
# bit-identical to cv2.cvtColor(rgb, COLOR_RGB2GRAY), what the face detector was tuned on.
_R2Y, _G2Y, _B2Y, _Y_SHIFT = 9798, 19235, 3735, 15

#: EXIF orientations that swap width and height (rotations by 90/270 degrees, transposes).
_SWAPPING_ORIENTATIONS: Final[frozenset[int]] = frozenset({5, 6, 7, 8})

#: Magic numbers of formats people send but we refuse: named in the error so they know what to do.
_KNOWN_UNSUPPORTED: Final[tuple[tuple[int, bytes, str], ...]] = (
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x02\x00", "CUR"),
    (0, b"%PDF", "PDF"),
    (0, b"8BPS", "Photoshop (PSD)"),
    (0, b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (0, b"\xff\x0a", "JPEG XL"),
    (4, b"ftypheic", "HEIC (the iPhone photo format)"),
    (4, b"ftypheix", "HEIC (the iPhone photo format)"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
    (0, b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)

# What Pillow raises for damaged data while opening or decoding (truncated files: OSError
# "image file is truncated"; broken PNG chunks: SyntaxError/zlib.error; odd headers: the rest).
_DECODE_FAILURES: Final[tuple[type[BaseException], ...]] = (
    OSError, SyntaxError, EOFError, ValueError, TypeError, IndexError, KeyError, struct.error,
    zlib.error,
)


class ImageError(InputError):
    """The image cannot be used (the message says why, in words fit for the person)."""


class EmptyImageError(ImageError):
    """No image at all: ``None``, zero bytes or a zero-size array."""


class ImageDecodeError(ImageError):
    """Missing, corrupt, truncated or unsupported image data (or an array of the wrong kind)."""


class ImageTooLargeError(ImageError):
    """Over the byte, pixel-count or side-length limit (a possible decompression bomb)."""


class ImageTooSmallError(ImageError):
    """Smaller than ``min_side`` on a side: too small to hold a readable face."""


@dataclass(frozen=True)
class ImageLimits:
    """Validation limits and the working size (all documented defaults).

    Attributes:
        max_bytes: largest accepted encoded input (10 MB: a 12-megapixel phone JPEG is 3-6 MB).
        max_pixels: most pixels (width x height) accepted, checked from the header before
            decoding (40 MP: above any phone camera; decoded RGB that is 120 MB).
        max_side: longest accepted width or height (12000: wider than any camera, stops long thin
            bombs that stay under ``max_pixels``).
        min_side: shortest accepted width or height (16: below that there is no readable face;
            FER-style 48x48 face crops pass).
        work_side: decoded images longer than this on their long side are downscaled to it
            (1280: a 720p webcam frame passes untouched; detection cost stays bounded).
            Set it to ``max_side`` or more to never downscale.
    """

    max_bytes: int = 10_000_000
    max_pixels: int = 40_000_000
    max_side: int = 12_000
    min_side: int = 16
    work_side: int = 1280

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1 or self.min_side < 1:
            raise ValueError(f"invalid image limits: {self}")
        if not self.min_side <= self.max_side or self.work_side < self.min_side:
            raise ValueError(f"invalid image limits: {self}")


@dataclass(frozen=True, eq=False)
class ImageFrame:
    """A decoded image: 8-bit RGB pixels plus where they came from.

    Attributes:
        rgb: (H, W, 3) uint8, C-contiguous, read-only.
        source_format: "jpeg", "png", "webp", "gif", "bmp", "mpo", "array", "pil" (a PIL image
            made in memory), or the lower-cased Pillow format of a PIL image passed in.
        original_size: (width, height) of the input after EXIF orientation, before downscaling.
        scale: ``rgb`` width / original width (1.0 when not downscaled); multiply original pixel
            coordinates by it to get ``rgb`` coordinates.
    """

    rgb: NDArray[np.uint8]
    source_format: str = "array"
    original_size: tuple[int, int] = (0, 0)
    scale: float = 1.0
    _gray: NDArray[np.uint8] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        rgb = self.rgb
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3
                and rgb.shape[2] == 3):
            raise ValueError("ImageFrame.rgb must be a uint8 (H, W, 3) array; use decode_image() "
                             "to convert other inputs")
        if not rgb.flags.c_contiguous:
            rgb = np.ascontiguousarray(rgb)
            object.__setattr__(self, "rgb", rgb)
        rgb.flags.writeable = False
        if self.original_size == (0, 0):
            object.__setattr__(self, "original_size", (int(rgb.shape[1]), int(rgb.shape[0])))

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def gray(self) -> NDArray[np.uint8]:
        """(H, W) uint8 luma, ITU-R BT.601 weights (equal to OpenCV's RGB2GRAY); read-only, cached."""
        if self._gray is None:
            x = self.rgb.astype(np.uint32)
            y = (x[..., 0] * _R2Y + x[..., 1] * _G2Y + x[..., 2] * _B2Y + (1 << (_Y_SHIFT - 1))) >> _Y_SHIFT
            g = y.astype(np.uint8)
            g.flags.writeable = False
            # Frozen dataclass: the cache is set behind the freeze (it is derived, not state).
            object.__setattr__(self, "_gray", g)
        assert self._gray is not None
        return self._gray

    def info(self) -> dict[str, Any]:
        """Plain-JSON description (for the perceive step's state, logs and the CLI)."""
        return {
            "width": self.width,
            "height": self.height,
            "original_width": self.original_size[0],
            "original_height": self.original_size[1],
            "scale": round(self.scale, 6),
            "source_format": self.source_format,
        }


#: Everything :func:`decode_image` accepts.
ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO, np.ndarray,
                    "PIL.Image.Image", ImageFrame]


# ---------------------------------------------------------------------------------------------
def decode_image(source: ImageSource | None, *, limits: ImageLimits | None = None) -> ImageFrame:
    """Decode, validate, orient, convert to RGB and downscale ``source`` (see module docstring).

    Raises :class:`ImageError` subclasses for unusable input.
    """
    limits = limits or ImageLimits()
    if source is None:
        raise EmptyImageError("no image was received")
    if isinstance(source, ImageFrame):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, limits)
    if _is_pil_image(source):
        return _from_pil(source, limits, owned=False)
    if isinstance(source, str) and source[:5].lower() == "data:":
        return _from_encoded(_data_url_bytes(source, limits), limits)
    if isinstance(source, str) and source[:8].lower().startswith(("http://", "https://")):
        # Fetching URLs from here would let a message make the server download anything.
        raise ImageDecodeError("image URLs are not fetched; send the image itself (bytes, a file "
                               "or a data URL)")
    if isinstance(source, (str, os.PathLike)):
        return _from_encoded(_read_path(source, limits), limits)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_byte_size(len(data), limits)
        return _from_encoded(data, limits)
    if hasattr(source, "read"):
        data = source.read(limits.max_bytes + 1)  # never more than the limit (+1 to detect "over")
        if not isinstance(data, (bytes, bytearray)):
            raise ImageDecodeError("the image file object must be opened in binary mode")
        _check_byte_size(len(data), limits)
        return _from_encoded(bytes(data), limits)
    raise ImageDecodeError(
        f"unsupported image input of type {type(source).__name__}; pass bytes, a file path, a data "
        "URL, a binary file object, a numpy array or a PIL image")


def _is_pil_image(obj: object) -> bool:
    # If Pillow was never imported, nobody can have handed us a PIL image: no import needed.
    mod = sys.modules.get("PIL.Image")
    return mod is not None and isinstance(obj, mod.Image)


# --- sizes ------------------------------------------------------------------------------------
def _check_byte_size(size: int, limits: ImageLimits) -> None:
    if size == 0:
        raise EmptyImageError("the image is empty (0 bytes)")
    if size > limits.max_bytes:
        raise ImageTooLargeError(
            f"the image file is {_mb(size)}; the limit is {_mb(limits.max_bytes)}. "
            "Please send a smaller image.")


def _check_dimensions(width: int, height: int, limits: ImageLimits) -> None:
    """Pixel-count and side limits, from the header (nothing decoded yet)."""
    if width <= 0 or height <= 0:
        raise EmptyImageError(f"the image has no pixels ({width}×{height})")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}×{height} pixels; the limit is {_mp(limits.max_pixels)}. "
            "Please send a smaller image.")
    if max(width, height) > limits.max_side:
        raise ImageTooLargeError(
            f"the image is {width}×{height} pixels; the limit is {limits.max_side} pixels on "
            "either side. Please send a smaller image.")
    if min(width, height) < limits.min_side:
        raise ImageTooSmallError(
            f"the image is only {width}×{height} pixels; at least {limits.min_side} pixels on "
            "each side are needed to see a face")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _mp(pixels: int) -> str:
    if pixels < 100_000:
        return f"{pixels} pixels"
    mp = pixels / 1e6
    return f"{mp:.0f} megapixels" if mp >= 10 else f"{mp:.1f}".rstrip("0").rstrip(".") + " megapixels"


def _work_size(width: int, height: int, limits: ImageLimits) -> tuple[int, int]:
    """Target size: long side at most ``work_side``, aspect ratio kept."""
    long_side = max(width, height)
    if long_side <= limits.work_side:
        return width, height
    f = limits.work_side / long_side
    return max(1, round(width * f)), max(1, round(height * f))


# --- encoded input ----------------------------------------------------------------------------
def _read_path(source: str | os.PathLike, limits: ImageLimits) -> bytes:
    path = Path(source)
    shown = str(path) if len(str(path)) <= 200 else str(path)[:200] + "…"
    try:
        if not path.is_file():
            raise ImageDecodeError(f"image file not found: {shown}")
        _check_byte_size(path.stat().st_size, limits)
        with open(path, "rb") as fh:
            data = fh.read(limits.max_bytes + 1)  # the file may have grown since stat()
    except ImageError:
        raise
    except OSError as exc:  # permissions, a name too long to be a path, ...
        raise ImageDecodeError(f"the image file could not be read: {shown}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL character: no file can have that name
        raise ImageDecodeError(f"image file not found: {shown!r}") from None
    _check_byte_size(len(data), limits)
    return data


def _data_url_bytes(url: str, limits: ImageLimits) -> bytes:
    """``data:[<media type>][;base64],<payload>`` -> bytes (size-checked before decoding)."""
    header, sep, payload = url.partition(",")
    if not sep:
        raise ImageDecodeError("the data URL is malformed (no ',' before the image data)")
    params = [p.strip().lower() for p in header[5:].split(";")]
    media_type = params[0] or "text/plain"
    if not media_type.startswith("image/"):
        raise ImageDecodeError(f"the data URL holds {media_type}, not an image")
    if "base64" in params[1:]:
        # Whitespace may sneak in from copy/paste or line-wrapped payloads; URL-safe alphabets too.
        b64 = "".join(payload.split()).replace("-", "+").replace("_", "/")
        # Reject oversize payloads before allocating the decoded bytes (4 chars -> 3 bytes).
        if len(b64) // 4 * 3 > limits.max_bytes + 3:
            raise ImageTooLargeError(
                f"the image is about {_mb(len(b64) // 4 * 3)}; the limit is {_mb(limits.max_bytes)}. "
                "Please send a smaller image.")
        b64 += "=" * (-len(b64) % 4)  # browsers pad, but hand-made URLs sometimes do not
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageDecodeError(f"the data URL's base64 image data is invalid: {exc}") from None
    else:
        if len(payload) > 3 * (limits.max_bytes + 1):  # each %XX escape is 3 characters -> 1 byte
            raise ImageTooLargeError(
                f"the data URL is {_mb(len(payload))}; the limit is {_mb(limits.max_bytes)}. "
                "Please send a smaller image.")
        data = unquote_to_bytes(payload)
    if not data:
        raise EmptyImageError("the data URL holds no image data")
    _check_byte_size(len(data), limits)
    return data


def _from_encoded(data: bytes, limits: ImageLimits) -> ImageFrame:
    from PIL import Image, UnidentifiedImageError

    # Escalate Pillow's decompression-bomb *warning* (it only warns between MAX_IMAGE_PIXELS and
    # twice that) to an error for this call only; the global Image.MAX_IMAGE_PIXELS is untouched.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # formats=: only the allowed decoders ever parse the bytes (less attack surface).
            im = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb(exc, limits) from None
        except UnidentifiedImageError:
            raise ImageDecodeError(_unidentified_message(data)) from None
        except _DECODE_FAILURES as exc:  # a recognised signature, then a broken header
            kind = _sniff_allowed(data)
            raise ImageDecodeError(f"the image is corrupt or truncated ({kind}): {exc}" if kind else
                                   f"the image is corrupt or not {_ALLOWED_TEXT}: {exc}") from None
        with im:
            if im.format not in _ALLOWED_FORMATS:  # belt and braces: formats= already ensures it
                raise ImageDecodeError(f"{im.format} images are not supported; please send "
                                       f"{_ALLOWED_TEXT}")
            return _from_pil(im, limits, owned=True)


def _bomb(exc: BaseException, limits: ImageLimits) -> ImageTooLargeError:
    """Pillow's decompression-bomb guard fired (while opening: before our own header check)."""
    from PIL import Image

    # Pillow warns above MAX_IMAGE_PIXELS (escalated here), so that is the limit when it is lower.
    limit = min(limits.max_pixels, Image.MAX_IMAGE_PIXELS or limits.max_pixels)
    found = re.search(r"\((\d+) pixels\)", str(exc))  # "Image size (900000000 pixels) exceeds ..."
    size = f"{_mp(int(found.group(1)))}" if found else "too many pixels"
    return ImageTooLargeError(f"the image is {size}, too many to decode safely; the limit is "
                              f"{_mp(limit)}. Please send a smaller image.")


def _sniff_allowed(data: bytes) -> str | None:
    """Name of the allowed format whose signature ``data`` starts with (for error messages)."""
    head = data[:12]
    if head.startswith(b"\xff\xd8"):
        return "JPEG"
    if head.startswith(b"\x89PNG"):
        return "PNG"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    return None


def _unidentified_message(data: bytes) -> str:
    head = data[:16]
    for offset, magic, name in _KNOWN_UNSUPPORTED:
        if head[offset:offset + len(magic)] == magic:
            return f"{name} images are not supported; please send {_ALLOWED_TEXT}"
    kind = _sniff_allowed(data)
    if kind:  # the right signature but the decoder gave up on the header: damaged or cut short
        return f"the image is corrupt or truncated ({kind}): its header cannot be read"
    if b"<svg" in data[:512].lower():
        return f"SVG (vector) images are not supported; please send {_ALLOWED_TEXT}"
    if _looks_like_text(data[:512]):
        return f"the data is text, not an image; please send {_ALLOWED_TEXT}"
    return f"the data is not a readable image: it is corrupt or not {_ALLOWED_TEXT}"


def _looks_like_text(sample: bytes) -> bool:
    s = sample.decode("utf-8", errors="replace")  # a character cut at the end is one U+FFFD
    if not s or s.count("\ufffd") > 1:
        return False
    return sum(c.isprintable() or c in "\r\n\t" for c in s) >= 0.95 * len(s)


# --- PIL images -------------------------------------------------------------------------------
def _from_pil(im: PIL.Image.Image, limits: ImageLimits, *, owned: bool) -> ImageFrame:
    """Opened (lazy) or loaded PIL image -> frame.  ``owned``: we opened it (may be reconfigured)."""
    from PIL import Image, ImageOps

    fmt = (im.format or "pil").lower()
    width, height = im.size  # from the header: Image.open has not decoded any pixel yet
    _check_dimensions(width, height, limits)
    orientation = _exif_orientation(im)
    swap = orientation in _SWAPPING_ORIENTATIONS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            stored_target = _work_size(width, height, limits)
            if owned and stored_target != (width, height) and hasattr(im, "draft"):
                # JPEG: let libjpeg decode at 1/2, 1/4 or 1/8 scale (never below the target):
                # several times faster and smaller than decoding all 12 MP of a phone photo.
                im.draft(None, stored_target)
            im.load()  # truncated/corrupt data fails here (OSError "image file is truncated")
            if orientation not in (None, 1):
                try:
                    im = ImageOps.exif_transpose(im)
                except _DECODE_FAILURES:
                    swap = False  # broken EXIF: keep the pixels as stored rather than lose the picture
            original_size = (height, width) if swap else (width, height)
            rgb = _pil_to_rgb(im, _work_size(*original_size, limits))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(exc, limits) from None
    except _DECODE_FAILURES as exc:
        raise ImageDecodeError(f"the image is corrupt or truncated ({fmt.upper()}): {exc}") from None
    return ImageFrame(rgb=_owned_contiguous(rgb), source_format=fmt, original_size=original_size,
                      scale=rgb.shape[1] / original_size[0])


def _exif_orientation(im: PIL.Image.Image) -> int | None:
    """EXIF orientation tag (parsed with the header, before decoding), or None."""
    try:
        value = im.getexif().get(0x0112)
    except _DECODE_FAILURES:
        return None  # unreadable EXIF: treat as upright
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _pil_to_rgb(im: PIL.Image.Image, target: tuple[int, int]) -> NDArray[np.uint8]:
    """Any mode -> RGB (alpha composited onto white), downscaled to ``target`` (width, height)."""
    from PIL import Image

    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey PNGs open as I;16 (or I): Pillow's own conversion to L clips, we scale.
        return _array_to_rgb(np.clip(np.asarray(im), 0, 65535).astype(np.uint16), target)
    if mode == "F":
        return _array_to_rgb(np.asarray(im), target)
    has_alpha = "A" in mode or mode == "RGBa" or "transparency" in im.info
    want = "RGBA" if has_alpha else "RGB"
    if mode != want:
        try:
            im = im.convert(want)
        except ValueError as exc:  # e.g. LAB, HSV: Pillow has no conversion to RGB
            raise ImageDecodeError(f"the image's colour mode {mode} is not supported: {exc}") from None
    if im.size != target:
        # reducing_gap: Image.reduce() by an integer factor first, then LANCZOS for the rest
        # (fast for large images; indistinguishable from a full LANCZOS resize at this gap).
        # Pillow resizes RGBA premultiplied, so transparent pixels do not bleed their colour.
        im = im.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    arr = np.asarray(im)
    return _composite_on_white(arr) if arr.shape[2] == 4 else arr


def _composite_on_white(rgba: NDArray[np.uint8]) -> NDArray[np.uint8]:
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:  # fully opaque (every webcam frame): dropping alpha is exact
        return rgba[..., :3]
    a = alpha.astype(np.uint16)
    out = (rgba[..., :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


# --- numpy arrays -----------------------------------------------------------------------------
def _from_array(a: np.ndarray, limits: ImageLimits) -> ImageFrame:
    """Raw pixels (what a webcam / Gradio gives) -> frame."""
    if a.size == 0:
        raise EmptyImageError(f"the image array is empty (shape {a.shape})")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))):
        hint = ""
        if a.ndim == 3 and a.shape[0] in (1, 3, 4):
            hint = f" (channels first? transpose it to {a.shape[1:] + a.shape[:1]})"
        raise ImageDecodeError(f"an image array must have shape (H, W), (H, W, 1), (H, W, 3) RGB or "
                               f"(H, W, 4) RGBA; got {a.shape}{hint}")
    height, width = a.shape[:2]
    _check_dimensions(width, height, limits)
    rgb = _array_to_rgb(a, _work_size(width, height, limits))
    return ImageFrame(rgb=_owned_contiguous(rgb), source_format="array", original_size=(width, height),
                      scale=rgb.shape[1] / width)


def _array_to_rgb(a: np.ndarray, target: tuple[int, int]) -> NDArray[np.uint8]:
    """(H, W[, 1|3|4]) array of a supported dtype -> (h, w, 3) uint8 at ``target`` (width, height)."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    a = _to_uint8(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if (a.shape[1], a.shape[0]) != target:
        from PIL import Image

        im = Image.fromarray(np.ascontiguousarray(a), "RGBA" if a.shape[2] == 4 else "RGB")
        a = np.asarray(im.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0))
    return _composite_on_white(a) if a.shape[2] == 4 else a


def _to_uint8(a: np.ndarray) -> NDArray[np.uint8]:
    kind = a.dtype.kind
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if kind == "f":
        if not np.all(np.isfinite(a)):
            raise ImageDecodeError("the image array holds invalid (NaN/infinite) values")
        x = a.astype(np.float32, copy=False)
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ImageDecodeError(f"a float image array must hold values in [0, 1]; got "
                                   f"[{lo:g}, {hi:g}] (send uint8 for 0-255 pixels)")
        return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    raise ImageDecodeError(f"unsupported image array dtype {a.dtype}: send uint8 (0-255), uint16 or "
                           "float (0-1) pixels")


def _owned_contiguous(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A C-contiguous array the frame owns: never freeze (or alias) the caller's own buffer."""
    out = np.array(rgb, dtype=np.uint8, order="C", copy=True)
    out.flags.writeable = False
    return out
