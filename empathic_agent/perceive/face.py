"""Face detection: an :class:`~empathic_agent.perceive.image.ImageFrame` -> the face to read, with its box.

One backend role, one hook (livekit-style): :class:`FaceDetector` owns timing and error
translation, subclasses implement :meth:`FaceDetector._detect_impl` on a grayscale array.  The
default backend is OpenCV's Haar cascade (``haarcascade_frontalface_alt2.xml``, shipped inside
``opencv-python-headless`` 4.x — opencv 5.x ships no cascades), registered as ``"haar"``.

Why these settings:

* Detection runs on the frame scaled down to :data:`DETECT_WIDTH` pixels wide: a person in
  front of a webcam fills a good part of a 640x480 frame, and Haar's cost grows with the pixel
  count (~4x less work than at full size).  Faces narrower than :data:`MIN_FACE_FRACTION` of the
  frame are not searched for: they are too small to read an expression from, or not the person
  talking.
* ``alt2`` rather than ``default``: in our probes it found the same faces with fewer false
  positives and ~1.5x faster.
* :func:`pick_face` chooses the face to read: the largest, with ties towards the centre (the
  person at the camera, not a poster behind them).

Images no larger than :data:`CROP_MAX_SIDE` pixels are taken as an already-cropped face (as in
FER-2013-style data sets): detection is skipped and the whole image is the face.  **No face found
means no reading** — the caller leaves the face out of fusion rather than inventing a neutral one.

Needs ``opencv-python-headless`` (``pip install 'empathic-agent[face]'``); imported lazily.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Final

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import ConfigError, EmpathicError, ModelError
from empathic_agent.perceive.image import ImageFrame

__all__ = [
    "FaceBox",
    "FaceDetector",
    "HaarFaceDetector",
    "DETECT_WIDTH",
    "SAMPLE_IMAGE",
    "sample_frame",
    "MIN_FACE_FRACTION",
    "CROP_MAX_SIDE",
    "CROP_MARGIN",
    "pick_face",
    "crop_face",
    "available_face_detectors",
    "load_face_detector",
    "register_face_detector",
]

log = logging.getLogger(__name__)

#: Width (pixels) of the copy of the frame the detector searches.
DETECT_WIDTH: Final[int] = 320
#: Smallest face searched for, as a fraction of the frame's width (24 px at DETECT_WIDTH).
MIN_FACE_FRACTION: Final[float] = 0.075
#: Haar pyramid step and the neighbours a detection needs (higher = fewer false positives).
SCALE_FACTOR: Final[float] = 1.15
MIN_NEIGHBORS: Final[int] = 4
#: Images whose longer side is at most this are read whole, as an already-cropped face.
CROP_MAX_SIDE: Final[int] = 64
#: Border added around a detected box before cropping, as a fraction of its side: Haar boxes run
#: from the brows to the chin, FER-2013's crops (what the expression model learned) show a little
#: more forehead and cheek.
CROP_MARGIN: Final[float] = 0.1


@dataclass(frozen=True)
class FaceBox:
    """A face in original-image pixel coordinates (after EXIF orientation)."""

    x: int
    y: int
    w: int
    h: int
    #: Detector's strength of evidence (Haar: neighbours merged into the box; 1.0 for whole-image crops).
    score: float = 1.0

    @property
    def area(self) -> int:
        return self.w * self.h

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h, "score": round(float(self.score), 3)}


class FaceDetector(ABC):
    """Base class of face detectors: ``detect(frame)`` -> boxes in the frame's original pixels."""

    name: str = "base"

    def __init__(self) -> None:
        self.last_detect_s: float | None = None
        self._loaded = False
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                try:
                    self._load_impl()
                except EmpathicError:
                    raise
                except Exception as exc:  # vendor errors become ours at the boundary
                    raise ModelError(f"face detector {self.name} failed to load: {type(exc).__name__}: {exc}") from exc
                self._loaded = True

    def detect(self, frame: ImageFrame) -> list[FaceBox]:
        """All faces found, largest first (an already-cropped small image is one whole-image face)."""
        if not isinstance(frame, ImageFrame):
            raise TypeError(f"detect() takes an ImageFrame, got {type(frame).__name__}")
        t0 = time.perf_counter()
        if max(frame.width, frame.height) <= CROP_MAX_SIDE:
            w, h = frame.original_size
            boxes = [FaceBox(0, 0, w, h, 1.0)]
        else:
            self.load()
            try:
                found = self._detect_impl(frame.gray())
            except EmpathicError:
                raise
            except Exception as exc:
                raise ModelError(f"face detector {self.name} failed: {type(exc).__name__}: {exc}") from exc
            # Back from the working copy to original pixels.
            s = frame.scale or 1.0
            boxes = [FaceBox(int(round(b.x / s)), int(round(b.y / s)), int(round(b.w / s)), int(round(b.h / s)), b.score)
                     for b in found]
        self.last_detect_s = time.perf_counter() - t0
        return sorted(boxes, key=lambda b: -b.area)

    def _load_impl(self) -> None:
        """Load the model (default: nothing)."""

    @abstractmethod
    def _detect_impl(self, gray: NDArray[np.uint8]) -> list[FaceBox]:
        """Faces in a uint8 (H, W) image, in that image's pixel coordinates."""


class HaarFaceDetector(FaceDetector):
    """OpenCV Haar cascade on a :data:`DETECT_WIDTH`-wide, histogram-equalised copy of the frame."""

    name = "haar"
    CASCADE: Final[str] = "haarcascade_frontalface_alt2.xml"

    def __init__(self, detect_width: int = DETECT_WIDTH) -> None:
        super().__init__()
        self.detect_width = detect_width
        self._cascade: Any = None
        self._cv2: Any = None

    def _load_impl(self) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise ModelError("face detection needs OpenCV: pip install 'empathic-agent[face]' "
                             "(opencv-python-headless 4.x)") from exc
        data = getattr(cv2, "data", None)
        path = (getattr(data, "haarcascades", "") or "") + self.CASCADE
        cascade = cv2.CascadeClassifier(path) if hasattr(cv2, "CascadeClassifier") else None
        if cascade is None or cascade.empty():
            raise ModelError(f"OpenCV {cv2.__version__} has no Haar cascade {self.CASCADE!r}; "
                             "install opencv-python-headless 4.x (5.x ships no cascades)")
        self._cv2, self._cascade = cv2, cascade

    def _detect_impl(self, gray: NDArray[np.uint8]) -> list[FaceBox]:
        cv2 = self._cv2
        h, w = gray.shape
        s = min(1.0, self.detect_width / w)
        small = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else gray
        small = cv2.equalizeHist(small)
        min_side = max(20, int(MIN_FACE_FRACTION * small.shape[1]))
        rects, _levels, weights = self._cascade.detectMultiScale3(
            small, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, minSize=(min_side, min_side),
            outputRejectLevels=True)
        out = []
        for (x, y, bw, bh), wt in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            out.append(FaceBox(int(x / s), int(y / s), int(bw / s), int(bh / s), float(wt)))
        return out


def pick_face(boxes: list[FaceBox], width: int, height: int) -> FaceBox | None:
    """The face to read: the largest, discounted by its distance from the centre (up to half)."""
    if not boxes:
        return None
    cx, cy, diag = width / 2, height / 2, max(1.0, float(np.hypot(width, height)) / 2)

    def score(b: FaceBox) -> float:
        d = float(np.hypot(b.x + b.w / 2 - cx, b.y + b.h / 2 - cy)) / diag
        return b.area * (1.0 - 0.5 * min(1.0, d))

    return max(boxes, key=score)


def crop_face(gray: NDArray[np.uint8], box: FaceBox, *, scale: float = 1.0, size: int = 48,
              margin: float = CROP_MARGIN) -> NDArray[np.uint8]:
    """Square ``size`` x ``size`` crop of ``box`` (original pixels; ``scale`` maps them into
    ``gray``) with ``margin`` added, edges replicated where the square leaves the image."""
    import cv2

    side = max(box.w, box.h) * (1.0 + 2.0 * margin) * scale
    cx, cy = (box.x + box.w / 2) * scale, (box.y + box.h / 2) * scale
    if max(gray.shape) <= CROP_MAX_SIDE and box.x == 0 and box.y == 0:
        patch = gray  # an already-cropped face: no margin to add
    else:
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        x1, y1 = x0 + int(round(side)), y0 + int(round(side))
        h, w = gray.shape
        pad = max(0, -x0, -y0, x1 - w, y1 - h)
        g = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else gray
        patch = g[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interp)


# -- registry (whisper-style): name -> factory ------------------------------------------------------
_DETECTORS: dict[str, Callable[[], FaceDetector]] = {"haar": HaarFaceDetector}


def register_face_detector(name: str, factory: Callable[[], FaceDetector]) -> None:
    _DETECTORS[name] = factory


def available_face_detectors() -> list[str]:
    return sorted(_DETECTORS)


def load_face_detector(name: str = "haar") -> FaceDetector:
    try:
        return _DETECTORS[name]()
    except KeyError:
        raise ConfigError(f"unknown face detector {name!r}; available: {', '.join(available_face_detectors())}") from None


#: The packaged public-domain sample photo (NASA astronaut portrait; see assets/SOURCE.md).
SAMPLE_IMAGE = Path(__file__).resolve().parent.parent / "assets" / "astronaut.jpg"


def sample_frame(face_width: int = 160) -> Any:
    """A 640x480 RGB 'webcam frame': the packaged public-domain sample photo scaled so the face is
    about ``face_width`` pixels wide, on a plain background with mild noise."""
    import numpy as np
    from PIL import Image

    img = Image.open(SAMPLE_IMAGE).convert("RGB")
    # In the 384-px sample the face box is about (132, 49, 73, 73).
    side = int(round(img.width * face_width / 73))
    img = img.resize((side, side), Image.LANCZOS)
    rng = np.random.default_rng(0)
    frame = np.clip(rng.normal(110, 6, (480, 640, 3)), 0, 255).astype(np.uint8)
    arr = np.asarray(img)
    fx, fy = int(side * 132 / 384), int(side * 49 / 384)  # face's top-left corner, scaled
    x0, y0 = 320 - fx - face_width // 2, 240 - fy - face_width // 2
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(640, x0 + side), min(480, y0 + side)
    frame[ys:ye, xs:xe] = arr[ys - y0:ye - y0, xs - x0:xe - x0]
    return frame
