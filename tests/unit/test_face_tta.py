"""The face CNN's test-time augmentation and snapshot averaging (small, random weights: the maths,
not the accuracy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empathic_agent.encode.face_model import FaceNet, TestTimeAugmentation, predict_logits, to_inference, tta_views


def test_config_values_old_and_new():
    assert TestTimeAugmentation.from_config("horizontal flip").n_views == 2  # configs before TTA
    t = TestTimeAugmentation.from_config({"flip": True, "shift_px": 0, "scales": [1.0, 1.08]})
    assert t.n_views == 4 and TestTimeAugmentation.from_config(t.to_config()) == t
    for bad in ("sideways", {"flip": True, "scales": [0.0]}, 3):
        with pytest.raises(ValueError):
            TestTimeAugmentation.from_config(bad)


def test_identity_and_mirror_views_are_exact():
    x = torch.rand(3, 1, 48, 48)
    v = tta_views(x, TestTimeAugmentation.from_config("horizontal flip")).reshape(3, 2, 1, 48, 48)
    assert torch.allclose(v[:, 0], x, atol=1e-5) and torch.allclose(v[:, 1], torch.flip(x, dims=[3]), atol=1e-5)


def test_folded_model_and_snapshot_average():
    torch.manual_seed(0)
    a, b = FaceNet().eval(), FaceNet().eval()
    crops = np.random.default_rng(0).integers(0, 255, (4, 48, 48), dtype=np.uint8)
    tta = TestTimeAugmentation.from_config({"flip": True, "shift_px": 0, "scales": [1.0, 1.08]})
    with torch.inference_mode():
        la, lb = predict_logits(a, crops, tta), predict_logits(b, crops, tta)
        both = predict_logits([a, b], crops, tta)
        folded = predict_logits(to_inference(a), crops, tta)  # batch norm folded in place
    assert both.shape == (4, 7) and torch.allclose(both, (la + lb) / 2, atol=1e-5)
    assert torch.allclose(folded, la, atol=1e-4)
