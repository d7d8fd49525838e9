"""The face CNN's training script end to end on a synthetic FER-2013-shaped data set: two short
runs with different seeds, then ``finalise`` ships them as one ensemble, and the runtime encoder
built from the written files reads exactly what ``finalise`` measured.

Synthetic images (a class-dependent bright square on noise) stand in for FER-2013, which CI does
not have; the point is the plumbing (files, config, weights, temperature), not the accuracy.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("cv2")

from empathic_agent.encode.face import FaceEncoder  # noqa: E402
from empathic_agent.encode.face_model import TestTimeAugmentation  # noqa: E402
from empathic_agent.training import face as train_face  # noqa: E402

FER_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def fake_fer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    rows = []
    for split, n in (("train", 420), ("test", 70)):
        for i in range(n):
            label = i % 7
            img = rng.integers(0, 90, (48, 48), dtype=np.uint8)
            y, x = divmod(label, 3)
            img[6 + 12 * y:18 + 12 * y, 6 + 12 * x:18 + 12 * x] = 230
            rel = f"{split}/{FER_NAMES[label]}/{i}.png"
            (root / "fer2013" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "fer2013" / rel)
            rows.append({"path": rel, "split": split, "emotion": FER_NAMES[label], "fer2013_usage": ""})
    with open(root / "fer2013" / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture(autouse=True)
def small_dev_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 140-image dev slice instead of 2,000 (the data set here has 420 training images)."""
    real = train_face.dev_split
    monkeypatch.setattr(train_face, "dev_split", lambda labels: real(labels, size=140))


def test_two_seeds_finalise_into_one_ensemble_the_encoder_reproduces(fake_fer: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    runs = []
    for seed in (1, 2):
        work = tmp_path / f"run{seed}"
        hist = train_face.train_epochs(fake_fer, cache, work, epochs=1, limit=128, progress=False, seed=seed)
        assert hist["settings"]["seed"] == seed and hist["settings"]["dev_split_seed"] == train_face.SEED
        runs.append(work)
    out = tmp_path / "weights"
    tta = TestTimeAugmentation.from_config({"flip": True, "scales": [1.0]})
    cfg = train_face.finalise(fake_fer, cache, runs[0], out, runs=[runs[1]], tta=tta, mini_xception_weight=0.0)
    assert cfg["facenet"]["weights"] == ["facenet.safetensors", "facenet-seed2.safetensors"]
    assert (out / "facenet-seed2.safetensors").is_file() and cfg["facenet"]["views_per_face"] == 2 * 2
    assert cfg["ensemble"]["weights"]["mini-xception"] == 0.0
    assert cfg["training"]["other_runs"][0]["settings"]["seed"] == 2
    assert json.loads((out / "config.json").read_text())["facenet"]["weights"] == cfg["facenet"]["weights"]

    enc = FaceEncoder(out)
    enc.load()
    assert [m.name for m in enc.members] == ["facenet"]  # weight 0: the mini-Xception is not loaded
    assert enc.info()["facenet"] == {"snapshots": 2, "views_per_face": 4}
    data = train_face.load_fer2013(fake_fer, cache, progress=False)
    x_test, y_test = data["test"]
    probs = enc.probabilities(x_test)
    acc = float(np.mean(probs.argmax(1) == y_test))
    assert acc == pytest.approx(cfg["figures"]["facenet"]["test"]["accuracy"], abs=1e-3)
    assert np.allclose(probs.sum(1), 1.0)


def test_a_run_with_another_dev_slice_is_refused(fake_fer: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a, b = tmp_path / "a", tmp_path / "b"
    for work, seed in ((a, 1), (b, 2)):
        train_face.train_epochs(fake_fer, cache, work, epochs=1, limit=64, progress=False, seed=seed)
    hist = json.loads((b / "history.json").read_text())
    hist["settings"]["dev_split_seed"] = 7
    (b / "history.json").write_text(json.dumps(hist))
    with pytest.raises(ValueError, match="dev slice"):
        train_face.finalise(fake_fer, cache, a, tmp_path / "out", runs=[b], mini_xception_weight=0.0)
