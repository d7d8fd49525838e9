"""Threshold choice of the risk reader (training/risk.py): the writers' false-alarm budget, the
ordinary-distress budget, and the one selection both ``train`` and ``rethreshold`` use."""

from __future__ import annotations

import json

import numpy as np

from empathic_agent.training import risk as tr


def _synthetic(n: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 5, n)
    # P(>= k) rises with the level, ordered across k like the reader's outputs.
    base = np.clip(levels[:, None] / 4 + rng.normal(0, 0.15, (n, 1)), 0, 1)
    p = np.clip(base - np.arange(4)[None, :] * 0.05, 0, 1).astype(np.float32)
    return {"whole": p, "views": np.clip(p + 0.02, 0, 1), "levels": levels, "hard": np.ones(n, bool),
            "writers": np.array([f"w{i % 4}" for i in range(n)])}


def test_thresholds_keep_the_writers_budget() -> None:
    oof = _synthetic()
    th = tr.choose_thresholds(oof["whole"], oof["levels"])
    neg = oof["whole"][oof["levels"] == 0]
    for k, t in enumerate(th):
        if t < tr.THRESHOLD_RANGE[1]:
            assert (neg[:, k] >= t).mean() <= tr.FALSE_ALARM_BUDGET[k] + 1e-9


def test_distress_budget_only_raises_thresholds_and_holds() -> None:
    oof = _synthetic()
    rng = np.random.default_rng(1)
    # Ordinary distress that reads half-way to risk: the writers' budget alone would alarm on it.
    distress = np.clip(rng.normal(0.55, 0.1, (500, 4)), 0, 1).astype(np.float32)
    plain = tr.choose_thresholds(oof["whole"], oof["levels"])
    bounded = tr.choose_thresholds(oof["whole"], oof["levels"], distress)
    assert all(b >= p for b, p in zip(bounded, plain))
    assert any(b > p for b, p in zip(bounded, plain))
    for k, t in enumerate(bounded):
        if t < tr.THRESHOLD_RANGE[1]:
            assert (distress[:, k] >= t).mean() <= tr.DISTRESS_BUDGET[k] + 1e-9


def test_distress_scores_take_the_highest_view() -> None:
    calls: list[list[str]] = []

    def predict(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[0.9 if "pills" in t else 0.1] * 4 for t in texts], np.float32)

    texts = ["Rough day at work. I have the pills counted out on the desk.", "All fine here."]
    whole = tr.distress_scores(predict, texts, views=False)
    views = tr.distress_scores(predict, texts, views=True)
    assert whole.shape == views.shape == (2, 4)
    assert views[0, 0] >= whole[0, 0] and views[1, 0] < 0.5


def test_rethreshold_writes_the_selection(tmp_path) -> None:
    from empathic_agent.training.runs import fingerprint

    oof = _synthetic()
    data = {"w0.csv": "0" * 16}
    np.savez(tmp_path / "oof.npz", **oof, run=np.array(fingerprint(data, 3)))  # the run that wrote the config
    config = {"thresholds": [0.5] * 4, "sentence_views": True, "hyperparameters": {}, "selection": {"writers": {}},
              "data": data, "seed": 3}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    out = tr.rethreshold(tmp_path / "oof.npz", tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert saved["thresholds"] == out["thresholds"]
    assert set(saved["selection"]["per_writer"]) == {"w0", "w1", "w2", "w3"}
    assert saved["hyperparameters"]["distress_budget"] is None
    fig = saved["selection"]["out_of_fold"]["whole_message"]
    assert fig["false_alarm_rate"] <= tr.FALSE_ALARM_BUDGET[0] + 1e-9


def test_the_training_pipelines_find_the_contributors_files():
    """The refactor that moved training out of ``safety/`` left both pipelines pointing at a
    ``training/data`` folder that does not exist: ``empathic safety train`` then found no writers."""
    from empathic_agent.training.clinical import DATA_DIR
    from empathic_agent.training.risk import TRAIN_DIR

    assert (TRAIN_DIR / "writer1.csv").is_file()
    assert sorted((DATA_DIR / "clinical" / "train").glob("guard_writer*.csv"))
    assert sorted((DATA_DIR / "clinical" / "train").glob("writer*.csv"))


def test_a_training_run_can_leave_writers_out():
    """``train-clinical --exclude STEM`` reproduces a shipped recipe on the data it had."""
    from empathic_agent.training.clinical import guard_data, presentation_data

    texts, _, groups = presentation_data()
    kept, _, kept_groups = presentation_data(exclude=["writerA", "writer9"])
    assert "writerA" in groups and "risk-writer9" in groups
    assert "writerA" not in kept_groups and "risk-writer9" not in kept_groups
    assert len(kept) == len(texts) - groups.count("writerA") - groups.count("risk-writer9")
    rows, _, g = guard_data(exclude=["guard_writerJ"])
    assert rows and "guard_writerJ" not in g and "guard_writerA" in g


def test_without_hard_negatives_only_the_distress_budget_sets_the_thresholds() -> None:
    """A refined reader has no out-of-fold predictions: its thresholds come from ordinary
    help-seekers' turns alone, each the lowest the distress budget allows, in chain order."""
    rng = np.random.default_rng(2)
    distress = np.sort(np.clip(rng.normal(0.3, 0.2, (2000, 4)), 0, 1), axis=1)[:, ::-1].astype(np.float32)
    th = tr.choose_thresholds(np.zeros((0, 4)), np.zeros(0, int), distress)
    for k, t in enumerate(th):
        assert (distress[:, k] >= t).mean() <= tr.DISTRESS_BUDGET[k] + 1e-9
    # The lowest allowed: one grid step lower breaks the budget (the first level has no chain above it).
    assert (distress[:, 0] >= th[0] - 0.01).mean() > tr.DISTRESS_BUDGET[0]


def test_refine_refuses_data_it_cannot_use(tmp_path) -> None:
    """The refinement checks its data before loading any model: a writer the reader already read,
    and a training file changed since (its replay would teach other labels)."""
    import shutil

    import pytest

    from empathic_agent.safety.learned import WEIGHTS_DIR

    base = tmp_path / "base"
    shutil.copytree(WEIGHTS_DIR, base)
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    already = tr.TRAIN_DIR / sorted(config["data"])[0]
    with pytest.raises(ValueError, match="already trained on"):
        tr.refine([already], base_dir=base, out_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="nothing to refine"):
        tr.refine([], base_dir=base, out_dir=tmp_path / "out")
    stale = dict(config["data"])
    stale[sorted(stale)[0]] = "0" * 16
    (base / "config.json").write_text(json.dumps(config | {"data": stale}), encoding="utf-8")
    new = tmp_path / "writer99.csv"
    new.write_text("text,level,subject,dimensions,kind,register\nhello there,none,none,,everyday,plain\n",
                   encoding="utf-8")
    with pytest.raises(ValueError, match="changed since"):
        tr.refine([new], base_dir=base, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
