"""The encoder base class, registry and the generic evaluation, with a fake encoder.

The fake (`empathic_agent.testing.FakeEncoder`) subclasses the real `Encoder`, so these tests
exercise the real public methods (batching contract, type checks, error translation) and the real
metrics on small CSVs written here.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from empathic_agent.encode import Encoder, EncoderError, available_encoders, load_encoder
from empathic_agent.encode import base as encode_base
from empathic_agent.errors import ConfigError
from empathic_agent.latent import CATEGORIES, Reading
from empathic_agent.testing import FakeEncoder
from empathic_agent.training.datasets import DatasetError
from empathic_agent.training.evaluate import classification_metrics, evaluate, lexicon_baselines, pearson, read_eval_csv


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def vad_reading(v: float, a: float, d: float, top: str = "neutral", var: float = 0.04) -> Reading:
    probs = {c: 0.05 for c in CATEGORIES}
    probs[top] = 0.7
    return Reading(mean=(v, a, d), variance=(var, var, var), categories=probs, modality="text")


# ---------------------------------------------------------------------------------------------
# Base class and registry


def test_fake_subclasses_the_real_base_class():
    assert issubclass(FakeEncoder, Encoder)


def test_encode_batch_equals_encode_and_records_stats():
    enc = FakeEncoder({"a": "joy", "b": "sadness"})
    batch = enc.encode_batch(["a", "b", "c"])
    assert [r.top_category for r in batch[:2]] == ["joy", "sadness"]
    assert batch == [enc.encode("a"), enc.encode("b"), enc.encode("c")]
    assert enc.last_stats is not None and enc.last_stats.batch_size == 1
    assert enc.encode_batch([]) == []
    assert all(r.modality == "text" for r in batch)


def test_wrong_input_type_is_a_type_error_naming_the_input():
    enc = FakeEncoder()
    with pytest.raises(TypeError, match="input 1 is int"):
        enc.encode_batch(["fine", 42])
    assert enc.calls == []  # rejected before the hook ran


def test_none_input_is_accepted_and_gives_the_default():
    r = FakeEncoder().encode(None)
    assert r.confidence < 0.01


def test_vendor_exception_becomes_encoder_error():
    enc = FakeEncoder(error=RuntimeError("onnx blew up"))
    with pytest.raises(EncoderError, match="onnx blew up") as info:
        enc.encode("x")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_hook_returning_wrong_count_is_caught():
    class Broken(Encoder):
        name = "broken"

        def _encode_batch_impl(self, xs):
            return [Reading.uninformative("text")]

    with pytest.raises(EncoderError, match="1 readings for 2 inputs"):
        Broken().encode_batch(["a", "b"])


def test_load_runs_once():
    class Counting(FakeEncoder):
        loads = 0

        def _load_impl(self):
            type(self).loads += 1

    enc = Counting()
    enc.encode("a")
    enc.encode("b")
    assert Counting.loads == 1 and enc.loaded and enc.load_s is not None


def test_registry_lists_text_and_unknown_modality_names_valid_ones(settings):
    assert "text" in available_encoders()
    with pytest.raises(ConfigError, match="available: .*text"):
        load_encoder("smell", settings)


def test_registry_builds_registered_factory(settings, monkeypatch):
    monkeypatch.setattr(encode_base, "ENCODERS", encode_base.ENCODERS.copy())
    fake = FakeEncoder()
    encode_base.register_encoder("fake-modality", lambda s: fake)
    assert load_encoder("fake-modality", settings) is fake
    assert "fake-modality" in available_encoders()


def test_importing_encode_does_not_import_torch():
    code = ("import sys, empathic_agent.encode, empathic_agent.encode.text, empathic_agent.training.evaluate, "
            "empathic_agent.training.text; "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Metrics


def test_classification_metrics_by_hand():
    gold = [("joy",), ("joy",), ("sadness",), ("anger",)]
    pred = ["joy", "sadness", "sadness", "joy"]
    m = classification_metrics(gold, pred)
    assert m["accuracy"] == pytest.approx(0.5)
    # joy: tp 1, gold 2, predicted 2 -> F1 = 2*1/(2+2) = 0.5
    # sadness: tp 1, gold 1, predicted 2 -> 2/3; anger: tp 0, gold 1, predicted 0 -> 0
    assert m["per_class_f1"]["joy"] == pytest.approx(0.5)
    assert m["per_class_f1"]["sadness"] == pytest.approx(2 / 3)
    assert m["per_class_f1"]["anger"] == 0.0
    assert m["per_class_f1"]["fear"] is None  # neither gold nor predicted
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert m["weighted_f1"] == pytest.approx((0.5 * 2 + 2 / 3 * 1 + 0.0 * 1) / 4)
    cm = np.array(m["confusion_matrix"]["matrix"])
    labels = m["confusion_matrix"]["labels"]
    assert labels == list(CATEGORIES)
    assert cm[labels.index("joy"), labels.index("sadness")] == 1  # rows are gold, columns predicted
    assert cm[labels.index("anger"), labels.index("joy")] == 1
    assert cm.sum() == 4


def test_classification_metrics_match_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    gold = [CATEGORIES[i] for i in rng.integers(0, 7, 300)]
    pred = [g if rng.random() < 0.5 else CATEGORIES[rng.integers(0, 7)] for g in gold]
    m = classification_metrics([(g,) for g in gold], pred)
    assert m["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(gold, pred))
    assert m["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(gold, pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(sklearn_metrics.f1_score(gold, pred, average="weighted"))
    cm = sklearn_metrics.confusion_matrix(gold, pred, labels=list(CATEGORIES))
    assert m["confusion_matrix"]["matrix"] == cm.tolist()


def test_multi_label_rule_counts_prediction_in_gold_set():
    m = classification_metrics([("joy", "surprise"), ("joy", "surprise")], ["surprise", "anger"])
    assert m["accuracy"] == pytest.approx(0.5)
    cm = np.array(m["confusion_matrix"]["matrix"])
    # The miss is charged to the first listed gold label (joy).
    assert cm[CATEGORIES.index("joy"), CATEGORIES.index("anger")] == 1
    assert cm[CATEGORIES.index("surprise"), CATEGORIES.index("surprise")] == 1


def test_pearson_edge_cases():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None
    assert pearson([1], [2]) is None


# ---------------------------------------------------------------------------------------------
# Evaluation on CSVs


def test_categories_only_csv(tmp_path):
    path = write_csv(tmp_path / "cats.csv", ["text", "emotion"],
                     [["yay", "joy"], ["boo", "sadness"], ["grr", "anger"], ["meh", "neutral"]])
    enc = FakeEncoder({"yay": "joy", "boo": "sadness", "grr": "joy", "meh": "neutral"})
    res = evaluate(enc, read_eval_csv(path))
    assert res["n"] == 4 and res["n_emotion"] == 4
    assert res["accuracy"] == pytest.approx(0.75)
    # joy F1 = 2*1/(1+2) = 2/3, sadness 1, anger 0, neutral 1
    assert res["macro_f1"] == pytest.approx((2 / 3 + 1 + 0 + 1) / 4)
    assert res["per_class_f1"]["sadness"] == pytest.approx(1.0)
    assert res["confusion_matrix"]["labels"] == list(CATEGORIES)
    assert not any(k.startswith("pearson_") for k in res)
    assert 0.0 <= res["calibration"]["ece"] <= 1.0
    json.dumps(res)  # plain JSON
    assert enc.calls == [["yay", "boo", "grr", "meh"]]


def test_vad_only_csv(tmp_path):
    rows = [["a", 0.5, 0.1, 0.0], ["b", -0.5, 0.3, -0.2], ["c", 0.1, -0.4, 0.3], ["d", -0.2, 0.0, 0.1]]
    path = write_csv(tmp_path / "vad.csv", ["text", "valence", "arousal", "dominance"], rows)
    preds = {"a": (0.4, 0.0, 0.1), "b": (-0.6, 0.2, -0.1), "c": (0.0, -0.2, 0.2), "d": (-0.1, 0.1, 0.0)}
    enc = FakeEncoder({k: vad_reading(*v) for k, v in preds.items()})
    res = evaluate(enc, read_eval_csv(path))
    gold = np.array([r[1:] for r in rows], dtype=float)
    pred = np.array([preds[r[0]] for r in rows])
    for d, dim in enumerate(["valence", "arousal", "dominance"]):
        assert res[f"pearson_{dim}"] == pytest.approx(np.corrcoef(pred[:, d], gold[:, d])[0, 1])
        assert res["vad"][dim]["mean_sq_z"] == pytest.approx(np.mean((pred[:, d] - gold[:, d]) ** 2 / 0.04))
    assert res["accuracy"] is None and res["macro_f1"] is None and res["confusion_matrix"] is None
    assert res["n_emotion"] == 0


def test_both_label_kinds_and_case_insensitive_columns(tmp_path):
    path = write_csv(tmp_path / "both.csv", ["Text", "Emotion", "Valence", "Arousal", "Dominance"],
                     [["x", "Happy", 0.6, 0.3, 0.2], ["y", "sad", -0.6, -0.3, -0.2], ["z", "angry", -0.5, 0.6, 0.3]])
    enc = FakeEncoder({"x": vad_reading(0.5, 0.2, 0.1, "joy"), "y": vad_reading(-0.4, -0.2, 0.0, "sadness"),
                       "z": vad_reading(-0.3, 0.5, 0.2, "anger")})
    res = evaluate(enc, read_eval_csv(path))
    assert res["accuracy"] == pytest.approx(1.0) and res["macro_f1"] == pytest.approx(1.0)
    assert res["pearson_valence"] > 0.9 and res["pearson_arousal"] > 0.9


def test_missing_labels_are_skipped_per_metric(tmp_path):
    path = write_csv(tmp_path / "gaps.csv", ["text", "emotion", "valence", "arousal", "dominance"],
                     [["a", "joy", 0.5, "", 0.1], ["b", "", -0.5, 0.2, ""], ["c", "sadness", "", 0.4, 0.3],
                      ["d", "joy", 0.2, 0.1, 0.2], ["e", "", "", "", ""]])
    preds = {"a": vad_reading(0.4, 0.0, 0.0, "joy"), "b": vad_reading(-0.3, 0.1, 0.0, "anger"),
             "c": vad_reading(0.0, 0.3, 0.2, "joy"), "d": vad_reading(0.1, 0.2, 0.3, "joy"),
             "e": vad_reading(0.0, 0.0, 0.0, "neutral")}
    res = evaluate(FakeEncoder(preds), read_eval_csv(path))
    assert res["n"] == 5
    assert res["n_emotion"] == 3  # a, c, d
    assert res["accuracy"] == pytest.approx(2 / 3)
    assert res["vad"]["valence"]["n"] == 3  # a, b, d
    assert res["vad"]["arousal"]["n"] == 3  # b, c, d
    assert res["pearson_valence"] == pytest.approx(np.corrcoef([0.4, -0.3, 0.1], [0.5, -0.5, 0.2])[0, 1])


def test_multi_label_csv_reports_single_label_rows(tmp_path):
    path = write_csv(tmp_path / "multi.csv", ["text", "emotion"],
                     [["a", "joy;surprise"], ["b", "anger|disgust"], ["c", "sadness"], ["d", "fear"]])
    enc = FakeEncoder({"a": "surprise", "b": "sadness", "c": "sadness", "d": "joy"})
    res = evaluate(enc, read_eval_csv(path))
    assert res["accuracy"] == pytest.approx(0.5)
    assert res["multi_label"]["rows"] == 2 and "in the gold set" in res["multi_label"]["rule"]
    assert res["single_label"]["n"] == 2 and res["single_label"]["accuracy"] == pytest.approx(0.5)


def test_path_inputs_resolve_against_the_csv_folder(tmp_path):
    sub = tmp_path / "clips"
    sub.mkdir()
    path = write_csv(sub / "labels.csv", ["path", "emotion"], [["a.wav", "joy"], ["deeper/b.wav", "anger"]])
    enc = FakeEncoder({"a.wav": "joy", "b.wav": "anger"}, modality="speech", input_kind="path")
    res = evaluate(enc, read_eval_csv(path, "path"))
    assert res["accuracy"] == pytest.approx(1.0)
    assert [Path(p) for p in enc.calls[0]] == [sub.resolve() / "a.wav", sub.resolve() / "deeper" / "b.wav"]


@pytest.mark.parametrize("header,rows,match", [
    (["sentence", "emotion"], [["hi", "joy"]], "no 'text' column"),
    (["text", "label"], [["hi", "joy"]], "no label column"),
    (["text", "emotion"], [["hi", "joy"], ["ho", "elated"]], r"3: unknown emotion 'elated'"),
    (["text", "valence"], [["hi", "4.5"]], r"outside \[-1, 1\].*\(x - 3\) / 2"),
    (["text", "valence"], [["hi", "very"]], "not a number"),
])
def test_bad_csv_gives_clear_error(tmp_path, header, rows, match):
    path = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(DatasetError, match=match):
        read_eval_csv(path)


def test_missing_or_empty_csv_and_wrong_input_kind(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_eval_csv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match="empty"):
        read_eval_csv(tmp_path / "empty.csv")
    path = write_csv(tmp_path / "t.csv", ["text", "emotion"], [["hi", "joy"]])
    es = read_eval_csv(path)
    with pytest.raises(DatasetError, match="reads 'path' inputs"):
        evaluate(FakeEncoder(input_kind="path"), es)


def test_lexicon_baselines_report_or_skip(tmp_path):
    path = write_csv(tmp_path / "lex.csv", ["text", "emotion", "valence"],
                     [["I am so happy and delighted", "joy", 0.7], ["This is awful and I am furious", "anger", -0.6],
                      ["I feel sad and lonely", "sadness", -0.5], ["The table is brown", "neutral", 0.0]])
    out = lexicon_baselines(read_eval_csv(path))
    assert set(out) == {"vader", "nrc_emolex"}
    for name, res in out.items():
        assert "skipped" in res or res["pearson_valence"] is not None, name
    if "skipped" not in out["nrc_emolex"]:
        assert out["nrc_emolex"]["accuracy"] is not None
        assert math.isfinite(out["nrc_emolex"]["macro_f1"])


def test_cli_eval_prints_json(tmp_path, monkeypatch, capsys):
    from empathic_agent.cli.main import main

    monkeypatch.setattr(encode_base, "ENCODERS", encode_base.ENCODERS.copy())
    encode_base.register_encoder("fakecli", lambda s: FakeEncoder({"yay": "joy", "boo": "joy"}))
    path = write_csv(tmp_path / "c.csv", ["text", "emotion"], [["yay", "joy"], ["boo", "sadness"]])
    out_file = tmp_path / "out.json"
    code = main(["encoders", "eval", "fakecli", "--csv", str(path), "--no-baselines", "--out", str(out_file)])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("n", "accuracy", "macro_f1", "weighted_f1", "per_class_f1", "confusion_matrix"):
        assert key in res
    assert res["accuracy"] == pytest.approx(0.5)
    assert json.loads(out_file.read_text()) == res


def test_cli_eval_bad_csv_is_a_clean_error(tmp_path, monkeypatch, capsys):
    from empathic_agent.cli.main import main

    monkeypatch.setattr(encode_base, "ENCODERS", encode_base.ENCODERS.copy())
    encode_base.register_encoder("fakecli", lambda s: FakeEncoder())
    path = write_csv(tmp_path / "c.csv", ["words", "emotion"], [["yay", "joy"]])
    assert main(["encoders", "eval", "fakecli", "--csv", str(path)]) == 2
    assert "no 'text' column" in capsys.readouterr().err
