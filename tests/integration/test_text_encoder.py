"""The real text encoder: packaged MiniLM + the committed trained weights, offline.

Checks behaviour a person would notice (clear emotions recognised, doubtful input uncertain but
never an error) and the eval command end to end.  No wall-clock assertions: latency is reported by
the benchmark, not asserted here.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from empathic_agent.encode import TextEncoder, load_encoder
from empathic_agent.latent import CATEGORIES, UNINFORMATIVE_VARIANCE
from empathic_agent.settings import Settings

EMPATHIC = str(Path(sys.executable).parent / "empathic")

#: (text, expected top category, valence sign check)
EMOTIONAL = [
    ("I'm so happy, this is the best day of my life!", "joy", lambda v: v > 0.3),
    ("My dog died this morning and I can't stop crying.", "sadness", lambda v: v < -0.2),
    ("I am furious, they lied to me again!", "anger", lambda v: v < 0.0),
    ("I'm terrified something bad is going to happen to my kids.", "fear", lambda v: v < 0.0),
]

_PASTE = " ".join(
    "The committee reviewed the quarterly figures and agreed to postpone the decision until the "
    "next meeting, pending a report from the finance department." for _ in range(80))[:10_000]

DOUBTFUL = {
    "one word": "ok",
    "emoji only": "😭😭😭",
    "long paste": _PASTE,
    "code": "def merge(a, b):\n    out = {**a}\n    for k, v in b.items():\n        out[k] = v\n    return out\n",
    "french": "Je suis allé au marché ce matin pour acheter du pain et des légumes.",
    "japanese": "今日は会議が三つあって、資料をまだ作っていません。",
}


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    enc = load_encoder("text", Settings.from_env({}))
    assert isinstance(enc, TextEncoder)
    enc.load()
    return enc


def total_variance(reading) -> float:
    return float(sum(reading.variance))


@pytest.mark.parametrize("text,category,valence_ok", EMOTIONAL, ids=[e[1] for e in EMOTIONAL])
def test_clear_emotions(encoder, text, category, valence_ok):
    r = encoder.encode(text)
    assert r.modality == "text"
    assert r.top_category == category, r.category_dict()
    assert valence_ok(r.valence), r.mean


def test_doubtful_input_is_wider_than_clear_emotion(encoder):
    clear = encoder.encode_batch([t for t, _, _ in EMOTIONAL])
    widest_clear = max(total_variance(r) for r in clear)
    least_confident_clear = min(r.confidence for r in clear)
    for name, text in DOUBTFUL.items():
        r = encoder.encode(text)
        assert total_variance(r) > widest_clear, (name, r.variance, widest_clear)
        assert r.confidence < least_confident_clear, (name, r.confidence)
        assert r.top_probability < 0.9, (name, r.category_dict())


def test_empty_and_odd_inputs_never_raise(encoder):
    odd = ["", "   \n\t ", None, b"\xff\xfe bytes that are not utf-8", "\ud800 lone surrogate",
           "a" * 100_000, "!!!???...", "12345 67890", "\x00\x1b[31mred\x1b[0m"]
    readings = encoder.encode_batch(odd)
    assert len(readings) == len(odd)
    for r in readings:
        assert len(r.categories) == len(CATEGORIES)
        assert abs(sum(r.categories) - 1.0) < 1e-9
        assert all(np.isfinite(r.mean)) and all(0 < v < UNINFORMATIVE_VARIANCE for v in r.variance)
    empty = readings[0]
    assert empty.mean == (0.0, 0.0, 0.0)
    assert max(empty.categories) - min(empty.categories) < 1e-9  # uniform: nothing known


def test_encode_batch_equals_encode(encoder):
    texts = [t for t, _, _ in EMOTIONAL] + ["ok", "", "The train was twenty minutes late again today."]
    batch = encoder.encode_batch(texts)
    for text, b in zip(texts, batch):
        single = encoder.encode(text)
        np.testing.assert_allclose(b.mean, single.mean, atol=1e-4)
        np.testing.assert_allclose(b.variance, single.variance, rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(b.categories, single.categories, atol=1e-4)


def test_truncation_and_doubt_components(encoder):
    paste, short = encoder.analyze([_PASTE, "ok"])
    assert paste.seen_fraction < 0.5 and paste.doubt_truncated > 0
    assert short.n_words == 1 and short.doubt_words == pytest.approx(0.5)


def test_cli_eval_on_a_small_csv(tmp_path):
    path = tmp_path / "small.csv"
    rows = [("I'm so happy, this is the best day of my life!", "joy", 0.8, 0.5, 0.4),
            ("My dog died this morning and I can't stop crying.", "sadness", -0.8, -0.2, -0.5),
            ("I am furious, they lied to me again!", "anger", -0.6, 0.7, 0.2),
            ("The bus leaves at seven.", "neutral", 0.0, -0.1, 0.0)]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "emotion", "valence", "arousal", "dominance"])
        w.writerows(rows)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([EMPATHIC, "encoders", "eval", "text", "--csv", str(path)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    for key in ("n", "accuracy", "macro_f1", "weighted_f1", "per_class_f1", "confusion_matrix",
                "pearson_valence", "pearson_arousal", "pearson_dominance"):
        assert key in res, key
    assert res["n"] == 4
    assert res["confusion_matrix"]["labels"] == list(CATEGORIES)
    assert res["accuracy"] >= 0.75
    assert res["pearson_valence"] > 0.8
    assert "baselines" in res


# ---------------------------------------------------------------- reading in a conversation

JOB_LOSS = ("I lost my job today.", "That's awful. What happened?")


def test_the_packaged_weights_read_messages_in_their_conversation(encoder):
    from empathic_agent.encode.text import TextContext

    assert encoder.reads_context
    message = "They said the whole team is being cut."
    negative = [CATEGORIES.index(c) for c in ("sadness", "anger", "fear")]
    with_context = encoder.analyze([message], [TextContext(JOB_LOSS)])[0].reading
    alone = encoder.analyze([message], [TextContext(JOB_LOSS)], use_context_head=False)[0].reading
    # The context head moves the reading towards the conversation it belongs to.
    assert with_context.category_array[negative].sum() > alone.category_array[negative].sum() + 0.02
    # Plain encode() never uses the conversation calibration or the head.
    assert encoder.encode(message).categories == encoder.analyze([message])[0].reading.categories


def test_batch_in_context_equals_one_by_one_and_bad_contexts_are_refused(encoder):
    from empathic_agent.encode.text import TextContext
    from empathic_agent.latent import Reading

    state = Reading.from_categories({"sadness": 0.8, "neutral": 0.2}, "prior")
    texts = ["They said the whole team is being cut.", "ok", "", "I start the new job on Monday!"]
    contexts = [TextContext(JOB_LOSS), None, TextContext(JOB_LOSS, state), TextContext((), state)]
    batch = encoder.encode_batch_in_context(texts, contexts)
    for text, ctx, r in zip(texts, contexts, batch):
        one = encoder.encode_in_context(text, ctx)
        np.testing.assert_allclose(one.categories, r.categories, atol=1e-4)
        np.testing.assert_allclose(one.mean, r.mean, atol=1e-4)
    # An empty message is still the prior, whatever came before.
    np.testing.assert_allclose(batch[2].categories, [1 / 7] * 7)
    np.testing.assert_allclose(batch[2].mean, [0, 0, 0])
    with pytest.raises(TypeError):
        encoder.encode_batch_in_context(["hi"], ["not a context"])
    with pytest.raises(ValueError):
        encoder.encode_batch_in_context(["hi", "there"], [None])


def test_sarcasm_slang_and_drawn_out_words_widen_the_reading(encoder):
    plain = encoder.analyze(["I am fine."])[0]
    for text, kind in (("yeah right, I am fine.", "sarcasm"), ("idk ngl i am fine", "slang"),
                       ("I am sooooo fine", "drawn_out")):
        marked = encoder.analyze([text])[0]
        assert kind in marked.style and marked.doubt_style > 0
        assert marked.reading.confidence < plain.reading.confidence


def test_cli_eval_reads_a_context_column_and_draws_the_reliability_diagram(tmp_path):
    data = Path(__file__).resolve().parents[1] / "data" / "conversation_emotion_handmade_dev.csv"
    png = tmp_path / "reliability.png"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([EMPATHIC, "encoders", "eval", "text", "--csv", str(data), "--no-baselines",
                          "--reliability", str(png)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["n"] == 52 and result["rows_with_context"] > 30
    assert set(result["utterance_only"]) >= {"accuracy", "macro_f1", "weighted_f1", "calibration"}
    assert result["calibration"]["reliability"] and 0 <= result["calibration"]["ece"] <= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
