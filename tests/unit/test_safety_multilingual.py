"""The multilingual risk reader: its head's training and thresholds, and how the screen uses it
(only on messages it does not read, never lowering a level).  A fake embedder (a hashed bag of
words) stands in for multilingual-e5-small; the real model runs in the integration tests."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest

from empathic_agent.safety.detect import CrisisDetector
from empathic_agent.safety.multilingual import MultilingualReading, MultilingualRiskReader
from empathic_agent.testing.fakes import FakeEmbedder
from empathic_agent.training.multilingual import _threshold, train_multilingual

SPANISH_RISK = "esta noche lo termino, ya tengo todo preparado y le escribi una nota a mi madre"
SPANISH_IDIOM = "me muero de ganas de ver la pelicula nueva este fin de semana"
HEADER = ["text", "level", "subject", "dimensions", "kind", "register"]


class Scripted(MultilingualRiskReader):
    """A reader whose readings are given per text (everything else: nothing)."""

    def __init__(self, readings: dict[str, tuple[float, float]], error: Exception | None = None) -> None:
        super().__init__(FakeEmbedder())
        self.thresholds = {"low": 0.5, "moderate": 0.7}
        self.readings, self.error, self.read_texts = readings, error, []

    def read_many(self, texts):
        if self.error is not None:
            raise self.error
        self.read_texts += list(texts)
        out = []
        for t in texts:
            low, mod = self.readings.get(t, (0.0, 0.0))
            level = "moderate" if mod >= 0.7 else "low" if low >= 0.5 else "none"
            out.append(MultilingualReading(low, mod, level))
        return out


def test_the_threshold_is_the_lowest_on_its_grid_within_the_budget():
    p = np.array([0.95, 0.9, 0.8, 0.3, 0.2, 0.1, 0.1, 0.05, 0.0, 0.0])
    assert _threshold(p, 0.10) == pytest.approx(0.901)  # one of ten may fire: 0.95 does, 0.9 does not
    assert (p >= _threshold(p, 0.10)).sum() == 1
    assert (p >= _threshold(p, 0.0)).sum() == 0
    assert _threshold(p, 0.25) == pytest.approx(0.801)
    ties = np.full(4, 0.5)
    assert (ties >= _threshold(ties, 0.3)).sum() == 0  # ties: none of the equal scores fires


def test_a_non_english_risk_message_is_routed_to_the_protocol_and_an_english_one_is_not_read():
    reader = Scripted({SPANISH_RISK: (0.95, 0.9)})
    screen = CrisisDetector(None, multilingual=reader)
    a = screen.assess(SPANISH_RISK)
    assert a.level == "moderate" and a.route == "protocol" and a.crisis
    assert any(s.startswith("multilingual:moderate") for s in a.signals)
    assert a.language["multilingual"]["level"] == "moderate"
    english = "I am going to take all the pills I have saved tonight"
    assert screen.assess(english).language.get("multilingual") is None
    assert english not in reader.read_texts


def test_a_weaker_reading_gives_a_check_in_and_none_lowers_a_level():
    low_only = "ya no le veo sentido a nada de lo que hago en el trabajo ni en casa"
    screen = CrisisDetector(None, multilingual=Scripted({low_only: (0.6, 0.2)}))
    a = screen.assess(low_only)
    assert a.level == "low" and a.route == "check_in" and not a.crisis
    # The cue lexicon's moderate stands whatever the reader says.
    cue = "quiero morir, ya no aguanto mas esta vida tan dura"
    b = CrisisDetector(None, multilingual=Scripted({cue: (0.0, 0.0)})).assess(cue)
    assert b.level == "moderate"
    assert CrisisDetector(None, multilingual=Scripted({})).assess(SPANISH_IDIOM).level == "none"


def test_a_failing_reader_leaves_the_cue_lexicon_standing(caplog):
    screen = CrisisDetector(None, multilingual=Scripted({}, error=RuntimeError("engine gone")))
    with caplog.at_level(logging.WARNING):
        a = screen.assess("quiero morir, ya no aguanto mas esta vida tan dura")
    assert a.level == "moderate" and "multilingual reader failed" in caplog.text


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)


def _train_tiny(tmp_path, **kwargs):
    """Three tiny writers (two with Spanish rows), trained into ``tmp_path / "w"``."""
    risk = ["pastillas noche morir", "tomar pastillas hoy morir", "morir pastillas guardadas", "quiero morir ya"]
    calm = ["pelicula fin semana ganas", "ganas ver pelicula", "fin de semana playa ganas", "pelicula nueva cine"]
    en_risk = ["tonight I take all pills and die", "want to die tonight pills", "pills saved die"]
    en_now = ["took all the pills an hour ago", "on the bridge now jumping", "swallowed them all just now"]
    en_other = ["my friend took all her pills", "my brother says he will jump", "my mate wants to die"]
    en_calm = ["film at the weekend", "going to the cinema this weekend", "new film out now"]
    for i, name in enumerate(["writer1", "writer2", "writer3"]):
        rows = [[t, "none", "none", "", "everyday", "plain"] for t in en_calm]
        rows += [[t, "high", "self", "ideation;method", "", "plain"] for t in en_risk]
        rows += [[t, "imminent", "self", "attempt", "", "plain"] for t in en_now]
        rows += [[t, "high", "other", "third_party", "", "plain"] for t in en_other]
        if i < 2:
            rows += [[f"{t} {i}", "moderate", "self", "ideation", "es:x", "non_english"] for t in risk]
            rows += [[f"{t} {i}", "none", "none", "", "es:everyday", "non_english"] for t in calm]
        _write(tmp_path / f"{name}.csv", rows)
    emb = FakeEmbedder(64)
    import empathic_agent.training.multilingual as tm

    # The fake texts are too short for a language guess: mark the Spanish ones by their kind here.
    spanish = {f"{t} {i}" for i in range(2) for t in risk + calm}
    orig = tm._non_english
    tm._non_english = lambda texts: np.array([t in spanish for t in texts])
    try:
        config = train_multilingual(sorted(tmp_path.glob("writer*.csv")), embedder=emb, out_dir=tmp_path / "w",
                                    progress=False, **kwargs)
    finally:
        tm._non_english = orig
    return config, emb


def test_training_writes_a_head_the_reader_loads_and_reads_with(tmp_path):
    """The head is trained, thresholds chosen out of fold, the files load, and the reader tells the
    writers' risk words from their ordinary ones."""
    config, emb = _train_tiny(tmp_path)
    assert config["non_english_rows"] == 16 and set(config["thresholds"]) == {"low", "moderate", "imminent", "other"}
    assert config["selection"]["non_english_hard_negatives"] == 8
    # The emergency's false alarms are counted on every row below it, not only the hard negatives.
    assert config["selection"]["imminent"]["negatives"] == 16
    assert config["selection"]["moderate"]["negatives"] == 8
    # Someone else's risk is asked of risk rows only; its false alarms are the person's own risk.
    assert config["selection"]["other"]["negatives"] == 8 and config["selection"]["other"]["positives"] == 0
    assert MultilingualRiskReader.available(tmp_path / "w")
    reader = MultilingualRiskReader(emb, tmp_path / "w")
    r_risk, r_calm = reader.read_many(["quiero morir pastillas noche", "ganas ver pelicula fin semana"])
    assert r_risk.moderate > r_calm.moderate and r_risk.low >= r_risk.moderate


def test_a_head_that_does_not_fit_the_embedder_is_a_clear_error(tmp_path):
    from empathic_agent.errors import ConfigError
    from empathic_agent.safety.multilingual import CONFIG_FILE, WEIGHTS_FILE

    np.savez(tmp_path / WEIGHTS_FILE, w1=np.zeros((2, 10, 8), np.float32), b1=np.zeros((2, 8), np.float32),
             w2=np.zeros((2, 8), np.float32), b2=np.zeros(2, np.float32))
    (tmp_path / CONFIG_FILE).write_text('{"format": 2, "outputs": ["low", "moderate"], '
                                        '"thresholds": {"low": 0.5, "moderate": 0.5}}')
    with pytest.raises(ConfigError, match="does not fit"):
        MultilingualRiskReader(FakeEmbedder(64), tmp_path).read("hola")
    (tmp_path / CONFIG_FILE).write_text('{"format": 1, "outputs": ["low", "moderate"], "thresholds": {}}')
    with pytest.raises(ConfigError, match="no b, w for a head of format 1"):
        MultilingualRiskReader(FakeEmbedder(64), tmp_path).read("hola")
    (tmp_path / CONFIG_FILE).write_text('{"format": 3, "outputs": ["low", "moderate"], "thresholds": {}}')
    with pytest.raises(ConfigError, match="format 1-4"):
        MultilingualRiskReader(FakeEmbedder(64), tmp_path).read("hola")
    (tmp_path / CONFIG_FILE).write_text('{"format": 2, "outputs": ["low", "moderate", "imminent"], "thresholds": {}}')
    with pytest.raises(ConfigError, match="format 1-4"):
        MultilingualRiskReader(FakeEmbedder(64), tmp_path).read("hola")


def test_scripts_without_spaces_count_their_characters_as_words():
    """A Japanese or Chinese sentence is one space-separated token: counted so it was taken as
    English (too short to identify) and read by the English reader; two characters now count as a
    word, so a sentence is long enough to be identified."""
    from empathic_agent.safety.language import detect_language, word_count

    assert word_count("今日は本当に疲れたので早く寝ます") >= 3
    assert word_count("hello there friend") == 3
    assert word_count("ok") == 1 and word_count("笑死") == 1
    assert word_count("สวัสดีครับ วันนี้เหนื่อยมาก") >= 3
    lang = detect_language("今日は本当に疲れたので早く寝ます")
    assert lang["code"] == "ja" and not lang["covered"]


def test_embeddings_are_cached_across_runs_and_only_new_texts_are_embedded(tmp_path):
    from empathic_agent.training.multilingual import _embed_cached

    emb = FakeEmbedder(16)
    a = _embed_cached(emb, ["uno dos", "tres cuatro"], tmp_path, False)
    b = _embed_cached(emb, ["tres cuatro", "cinco seis", "uno dos"], tmp_path, False)
    assert [sorted(c) for c in emb.calls] == [["tres cuatro", "uno dos"], ["cinco seis"]]
    np.testing.assert_allclose(b[2], a[0])
    assert _embed_cached(FakeEmbedder(16), ["uno dos"], None, False).shape == (1, 16)


def test_the_reader_applies_the_head_the_trainer_fits():
    """The reader's stacked layers give the trainer's own predictions (the standardisation folded
    into the first layer)."""
    from empathic_agent.training.multilingual import _fit, predict

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)).astype(np.float32) * 3 + 1
    y = x[:, 0] + 0.5 * x[:, 1] > 1.5
    head = _fit(x, y, np.ones(len(x)))
    p = predict(head, x)
    assert ((p >= 0.5) == y).mean() > 0.9
    reader = MultilingualRiskReader(FakeEmbedder(12))
    reader._layers = {k: np.stack([head[k], head[k]]) for k in ("w1", "b1", "w2", "b2")}
    reader.thresholds = {"low": 0.5, "moderate": 0.5}
    reader.embedder.embed = lambda texts: x[: len(texts)]
    got = reader.read_many(["a"] * 5)
    np.testing.assert_allclose([g.moderate for g in got], p[:5], rtol=1e-4, atol=1e-5)


def test_a_first_format_linear_head_still_loads_and_reads_the_same(tmp_path):
    from empathic_agent.safety.multilingual import CONFIG_FILE, WEIGHTS_FILE

    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(64, 2)).astype(np.float32), np.array([0.3, -0.2], np.float32)
    np.savez(tmp_path / WEIGHTS_FILE, w=w, b=b)
    (tmp_path / CONFIG_FILE).write_text('{"format": 1, "outputs": ["low", "moderate"], '
                                        '"thresholds": {"low": 0.5, "moderate": 0.5}}')
    emb = FakeEmbedder(64)
    reader = MultilingualRiskReader(emb, tmp_path)
    got = reader.read("hola que tal")
    p = 1 / (1 + np.exp(-(emb.embed(["hola que tal"])[0] @ w + b)))
    assert got.moderate == pytest.approx(float(p[1]), rel=1e-4, abs=1e-6)
    assert got.low == pytest.approx(float(max(p)), rel=1e-4, abs=1e-6)


def test_when_the_multilingual_reader_fails_the_english_reader_still_reads_a_foreign_message(caplog):
    """The English reader steps aside for a message in another language only when the multilingual
    reader has read it: a failing engine must not leave the message to the cue lexicon alone."""
    from empathic_agent.safety.learned import RiskModel

    class Reader(RiskModel):
        def __init__(self) -> None:
            self.texts: list[str] = []

        def read(self, text):
            self.texts.append(text)
            raise RuntimeError("stop here")  # the English reader was asked: that is what is tested

    text = "ya no quiero seguir con esta vida, mañana lo termino todo y me despido de todos"
    english = Reader()
    with caplog.at_level(logging.WARNING):
        CrisisDetector(english, multilingual=Scripted({}, error=RuntimeError("engine gone"))).assess(text)
    assert english.texts == [text]
    english = Reader()
    CrisisDetector(english, multilingual=Scripted({text: (0.9, 0.9)})).assess(text)
    assert english.texts == []


async def test_a_check_in_in_a_language_the_agent_does_not_read_is_the_vetted_check_in_alone(settings):
    """The embedded model reads English only: for a low reading of a message in another language
    the reply is the protocol's language note and check-in, and the model is not asked (in English
    the model's reply still comes first: ``test_safety.test_low_risk_gets_the_generated_reply_then_the_vetted_check_in``)."""
    import dataclasses

    from langgraph.checkpoint.memory import InMemorySaver

    from empathic_agent.agent import Agent
    from empathic_agent.graph import build_services
    from empathic_agent.testing.fakes import FakeLLM

    spanish = "ya no le veo sentido a nada de lo que hago en el trabajo ni en casa"
    llm = FakeLLM(["Sounds like a good plan for the situation."])
    services = build_services(dataclasses.replace(settings, safety_semantic=False), llm=llm, text_encoder=None,
                              memory=None, speech=None, face=None, tts=None)
    services.safety.detector.multilingual = Scripted({spanish: (0.6, 0.2)})
    agent = await Agent.open(settings, services=services, checkpointer=InMemorySaver())
    result = await agent.respond("ann", "s1", text=spanish)
    assert result.route == "check_in" and not result.crisis
    assert result.reply.startswith("I may not fully understand messages in your language")
    assert "are you safe" in result.reply and "good plan" not in result.reply
    assert llm.prompts == []


async def _answer(settings, text, **changes):
    import dataclasses

    from langgraph.checkpoint.memory import InMemorySaver

    from empathic_agent.agent import Agent
    from empathic_agent.graph import build_services
    from empathic_agent.testing.fakes import FakeLLM

    llm = FakeLLM(["Can I help with that? Can I find some books on the topic?"])
    s = dataclasses.replace(settings, safety_semantic=False, **changes)
    services = build_services(s, llm=llm, text_encoder=None, memory=None, speech=None, face=None, tts=None)
    services.safety.detector.multilingual = Scripted({})  # reads nothing: no risk
    agent = await Agent.open(s, services=services, checkpointer=InMemorySaver())
    return await agent.respond("ann", "s1", text=text), llm


async def test_an_ordinary_message_in_a_language_the_responder_does_not_write_gets_the_honest_reply(settings):
    """The embedded model writes English only: a Spanish message without risk gets the protocol's
    language reply, and the model is not asked; an English one is generated as usual."""
    spanish = "hoy tuve un día muy largo en el trabajo y estoy muy cansada de todo esto"
    result, llm = await _answer(settings, spanish)
    assert result.route == "continue" and not result.crisis
    assert result.reply.startswith("I'm sorry, I can only read and write English well")
    assert "books" not in result.reply and llm.prompts == []
    result, llm = await _answer(settings, "today was a very long day at work and I am so tired of it all")
    assert "books" in result.reply and len(llm.prompts) == 1


async def test_a_responder_that_writes_the_language_is_asked(settings):
    spanish = "hoy tuve un día muy largo en el trabajo y estoy muy cansada de todo esto"
    for languages in ("*", "en,es"):
        result, llm = await _answer(settings, spanish, reply_languages=languages)
        assert "books" in result.reply and len(llm.prompts) == 1


def test_reply_languages_default_to_english_for_the_embedded_model_and_any_for_a_server(settings):
    import dataclasses

    assert settings.reply_language_codes == frozenset({"en"})
    assert dataclasses.replace(settings, llm_backend="openai").reply_language_codes is None
    assert dataclasses.replace(settings, reply_languages="EN, de").reply_language_codes == frozenset({"en", "de"})
    assert dataclasses.replace(settings, llm_backend="openai", reply_languages="en").reply_language_codes == {"en"}


def _reader_saying(*logits: float) -> MultilingualRiskReader:
    """A real reader whose head gives these logits (low, moderate[, imminent]) for any message:
    one hidden unit fixed at 1, the output weights are the logits."""
    n = len(logits)
    reader = MultilingualRiskReader(FakeEmbedder(8))
    reader._layers = {"w1": np.zeros((n, 8, 1), np.float32), "b1": np.ones((n, 1), np.float32),
                      "w2": np.array([[v] for v in logits], np.float32), "b2": np.zeros(n, np.float32)}
    reader.outputs = ("low", "moderate", "imminent", "other")[:n]
    reader.thresholds = {k: 0.5 for k in reader.outputs}
    return reader


def test_an_emergency_in_another_language_takes_the_emergency_route():
    """'I took all the pills half an hour ago' in Spanish: the emergency number leads, as it does in
    English (the third output, P(level >= imminent))."""
    reader = _reader_saying(4.0, 4.0, 4.0)
    assert reader.read("x").level == "imminent"
    a = CrisisDetector(None, multilingual=reader).assess(SPANISH_RISK)
    assert a.level == "imminent" and a.route == "emergency" and a.crisis
    assert any(s.startswith("multilingual:imminent:") for s in a.signals)
    assert a.language["multilingual"]["imminent"] > 0.9


def test_the_emergency_output_needs_the_protocols_threshold_too_and_old_heads_never_say_it():
    assert _reader_saying(4.0, -4.0, 4.0).read("x").level == "low"  # not risk enough to be an emergency
    assert _reader_saying(4.0, 4.0, -4.0).read("x").level == "moderate"
    old = _reader_saying(4.0, 4.0)  # a head of format 1 or 2: two outputs
    got = old.read("x")
    assert got.level == "moderate" and got.imminent is None and "imminent" not in got.to_dict()


def test_keep_existing_trains_only_the_outputs_the_head_lacks(tmp_path):
    """The shipped head's third output was added this way: the first two outputs' layers and
    thresholds stay exactly as they were."""
    from empathic_agent.safety.multilingual import CONFIG_FILE, WEIGHTS_FILE

    _train_tiny(tmp_path)
    w = tmp_path / "w"
    with np.load(w / WEIGHTS_FILE) as z:
        full = {k: z[k] for k in z.files}
    # Make it a two-output head of format 2 with recognisable thresholds.
    np.savez(w / WEIGHTS_FILE, **{k: v[:2] for k, v in full.items()})
    cfg = json.loads((w / CONFIG_FILE).read_text())
    cfg.update(format=2, outputs=["low", "moderate"], thresholds={"low": 0.123, "moderate": 0.456})
    (w / CONFIG_FILE).write_text(json.dumps(cfg))
    config, emb = _train_tiny(tmp_path, keep_existing=True)
    assert config["thresholds"]["low"] == 0.123 and config["thresholds"]["moderate"] == 0.456
    assert config["kept"]["outputs"] == ["low", "moderate"] and config["selection"]["low"]["kept"]
    assert config["selection"]["imminent"]["budget"] == pytest.approx(0.01)
    with np.load(w / WEIGHTS_FILE) as z:
        for k in ("w1", "b1", "w2", "b2"):
            np.testing.assert_array_equal(z[k][:2], full[k][:2])
            assert z[k].shape[0] == 4
    reader = MultilingualRiskReader(emb, w)
    assert reader.read("quiero morir ya 0").imminent is not None
    assert reader.outputs == ("low", "moderate", "imminent", "other")


def test_someone_elses_emergency_in_another_language_takes_the_helper_route():
    """'My friend sent me goodbye and does not answer' in another language: the fourth output,
    P(subject = other), gives the helper route, as in English; below its threshold, or on a
    message the head only checks in on, the risk is the person's own."""
    helper = _reader_saying(4.0, 4.0, 4.0, 4.0)
    a = CrisisDetector(None, multilingual=helper).assess(SPANISH_RISK)
    assert a.subject == "other" and a.route == "helper" and a.level == "imminent", a.to_dict()
    assert a.language["multilingual"]["subject"] == "other"
    own = CrisisDetector(None, multilingual=_reader_saying(4.0, 4.0, 4.0, -4.0)).assess(SPANISH_RISK)
    assert own.subject == "self" and own.route == "emergency"
    check_in = _reader_saying(4.0, -4.0, -4.0, 4.0).read("x")
    assert check_in.level == "low" and check_in.subject == "self"
