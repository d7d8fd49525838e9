"""Voice input with the real offline models: Whisper-base transcription of Piper-synthesised
speech, the speech emotion encoder (committed RAVDESS heads), per-user voice baselines, the whole
perception step, and the speech evaluation on a tiny CSV."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest

from empathic_agent.encode.speech import SpeechEncoder
from empathic_agent.latent import CATEGORIES, MODALITY_SPEECH, UNINFORMATIVE_VARIANCE
from empathic_agent.memory.voice_baselines import VoiceBaselineStore
from empathic_agent.models import resolve_model
from empathic_agent.perceive.audio import AudioDecodeError
from empathic_agent.perceive.speech import SpeechPerception
from empathic_agent.perceive.stt import WhisperSTT
from empathic_agent.settings import Settings
from empathic_agent.speak.tts import wav_bytes

SENTENCES = [
    "The weather is lovely today.",
    "I could not sleep last night because I was worried about my exam.",
    "Please call my sister tomorrow morning.",
]
#: Extra utterances for building a voice baseline (varied length and pace).
BASELINE_TEXTS = [
    "Good morning.", "I went for a walk in the park.", "My brother is coming to visit on Sunday.",
    "The train was late again.", "I think I will cook pasta tonight.", "Work was fine, nothing special.",
    "Can you remind me to buy milk?", "We watched a film about the ocean.",
]


def _norm(text: str) -> str:
    """Case and punctuation only."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def _word_edits(a: str, b: str) -> int:
    """Word-level Levenshtein distance between two normalised transcripts."""
    x, y = a.split(), b.split()
    row = list(range(len(y) + 1))
    for i, wx in enumerate(x, 1):
        prev, row[0] = row[0], i
        for j, wy in enumerate(y, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (wx != wy))
    return row[-1]


@pytest.fixture(scope="session")
def cache_dir():
    return Settings.from_env({}).cache_dir


@pytest.fixture(scope="session")
def voice(cache_dir):
    from piper import PiperVoice

    model = resolve_model("tts", "piper-joe-medium", cache_dir)
    return PiperVoice.load(model.location, config_path=model.files["config"])


@pytest.fixture(scope="session")
def say(voice):
    """text (+ length_scale) -> (sample_rate, float32 samples), memoised."""
    from piper import SynthesisConfig

    memo: dict[tuple[str, float], tuple[int, np.ndarray]] = {}

    def _say(text: str, length_scale: float = 1.0) -> tuple[int, np.ndarray]:
        key = (text, length_scale)
        if key not in memo:
            # Noise scales 0: Piper otherwise samples its phoneme noise, and a rare draw made
            # Whisper hear "cannot" for "could not" in CI.
            config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
            chunks = list(voice.synthesize(text, config))
            memo[key] = (chunks[0].sample_rate, np.concatenate([c.audio_float_array for c in chunks]))
        return memo[key]

    return _say


@pytest.fixture(scope="session")
def stt(cache_dir):
    s = WhisperSTT("whisper-base", cache_dir)
    s.load()
    return s


@pytest.fixture(scope="session")
def encoder(cache_dir):
    enc = SpeechEncoder(cache_dir=cache_dir, baselines=VoiceBaselineStore(None))
    enc.load()
    return enc


# ---------------------------------------------------------------------------------------------
# Transcription


@pytest.mark.parametrize("i", range(len(SENTENCES)))
def test_whisper_transcribes_synthesised_speech(stt, say, i):
    rate, x = say(SENTENCES[i])
    # Different input forms: a Gradio-style array tuple, WAV bytes, and 16-bit PCM at 22 kHz.
    source = [(rate, x), wav_bytes(x, rate), (rate, (x * 32767).astype(np.int16))][i]
    t = stt.transcribe(source)
    # Word error rate <= 15 % (one edit in a short sentence, two in the long one): a garbled or
    # wrong-language transcript fails, a "cannot" for "could not" slip on another CPU does not.
    words = len(_norm(SENTENCES[i]).split())
    assert _word_edits(_norm(t.text), _norm(SENTENCES[i])) <= max(1, math.ceil(0.15 * words)), t.text
    assert t.language == "en" and t.language_probability > 0.5
    assert t.segments and t.segments[0].start_s >= 0 and t.segments[-1].end_s <= t.audio_s + 0.5
    assert t.skipped is None and t.timings["total_s"] > 0


def test_whisper_skips_silence_without_running(stt):
    t = stt.transcribe((16000, np.zeros(16000, np.float32)))
    assert t.text == "" and t.skipped == "silence" and t.segments == ()


# ---------------------------------------------------------------------------------------------
# Speech emotion encoder


def _valid(r) -> None:
    assert r.modality == MODALITY_SPEECH
    assert len(r.categories) == len(CATEGORIES) and abs(sum(r.categories) - 1) < 1e-6
    assert all(-1 <= m <= 1 for m in r.mean)
    assert all(0 < v < UNINFORMATIVE_VARIANCE for v in r.variance)


def test_encoder_returns_valid_readings(encoder, say):
    readings = encoder.encode_batch([say(s) for s in SENTENCES])
    assert len(readings) == len(SENTENCES)
    for r in readings:
        _valid(r)
        # A clear, clean sentence is evidence: on some dimension tighter than the uninformed prior
        # (1/3); hesitating between far-apart categories may still leave another dimension wide.
        assert min(r.variance) < 1.0 / 3.0
    assert encoder.last_analyses[0].head == "cold"
    assert encoder.last_analyses[0].doubt["cold_start"] > 0


def test_flat_and_short_audio_are_less_certain_than_expressive_speech(encoder, say):
    rate, x = say("I am so happy to see you again, this is wonderful news!")
    expressive = encoder.analyze((rate, x))
    short = encoder.analyze(say("Hi."))
    t = np.arange(int(1.5 * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 150 * t)
    flat = encoder.analyze((16000, np.concatenate([np.zeros(8000), tone, np.zeros(8000)]).astype(np.float32)))
    silence = encoder.analyze((16000, np.zeros(16000, np.float32)))
    for a in (expressive, short, flat):
        _valid(a.reading)
    v_expr = sum(expressive.reading.variance)
    assert sum(short.reading.variance) > v_expr
    assert sum(flat.reading.variance) > v_expr
    assert short.doubt["short"] > expressive.doubt["short"]
    assert flat.doubt["flat"] > 0.5 > expressive.doubt["flat"]
    assert silence.status == "silence" and silence.head == "none"
    assert silence.reading.variance[0] == UNINFORMATIVE_VARIANCE


def test_corrupt_audio_gives_no_evidence_and_missing_files_raise(encoder, tmp_path):
    r = encoder.encode(b"definitely not audio" * 50)
    assert r.variance[0] == UNINFORMATIVE_VARIANCE and encoder.last_analyses[0].error
    from empathic_agent.errors import InputError

    with pytest.raises(InputError):
        encoder.encode(tmp_path / "missing.wav")


def test_voice_baseline_persists_adapts_and_is_deleted(cache_dir, say, tmp_path):
    db = tmp_path / "voice_baselines" / "baselines.sqlite"
    enc = SpeechEncoder(cache_dir=cache_dir, baselines=VoiceBaselineStore(db))
    enc.load()
    need = enc.head.min_baseline_clips
    clips = [say(t, ls) for ls in (1.0, 0.85, 1.2) for t in BASELINE_TEXTS][:need]
    assert len(clips) == need
    heads = [enc.analyze(c, "ann").head for c in clips]
    assert set(heads) == {"cold"}  # not enough baseline yet for any of them

    # A new store on the same file (a restarted process) sees Ann's baseline, and only hers.
    enc2 = SpeechEncoder(cache_dir=cache_dir, baselines=VoiceBaselineStore(db))
    base = enc2.baseline_of("ann")
    assert base is not None and base.clips == need
    assert enc2.baseline_of("bob") is None
    a = enc2.analyze(say(SENTENCES[0]), "ann")
    assert a.head == "adapted" and a.baseline_clips == need and a.baseline_updated
    assert a.doubt["cold_start"] == 0
    _valid(a.reading)
    b = enc2.analyze(say(SENTENCES[0]), "bob")
    assert b.head == "cold" and b.baseline_clips == 0
    # Without a baseline: population statistics and more doubt (a wider reading) for the same clip.
    assert b.doubt["doubt"] > a.doubt["doubt"]

    exported = enc2.export_baseline("ann")
    assert exported["user_id"] == "ann" and exported["clips"] == need + 1
    assert len(exported["mean"]) == len(exported["variance"]) == len(exported["feature_names"])

    assert enc2.delete_baseline("ann") is True
    assert enc2.delete_baseline("ann") is False
    assert VoiceBaselineStore(db).get("ann") is None
    assert enc2.analyze(say(SENTENCES[1]), "ann", update_baseline=False).head == "cold"
    assert VoiceBaselineStore(db).users() == ["bob"]


# ---------------------------------------------------------------------------------------------
# The perception step


def test_perception_of_one_spoken_turn(stt, encoder, say):
    perception = SpeechPerception(stt, encoder)
    rate, x = say(SENTENCES[2])
    r = perception.perceive(wav_bytes(x, rate), "carol")
    assert _norm(r.text) == _norm(SENTENCES[2])
    assert r.errors == ()
    _valid(r.speech_reading)
    assert r.clip_info["status"] == "ok" and r.clip_info["source_format"] == "wav"
    for key in ("decode_s", "stt_s", "emotion_s", "total_s", "emotion.whisper_s", "stt.encode_s"):
        assert r.timings[key] >= 0, key
    assert r.analysis.baseline_updated
    d = r.to_dict()
    assert d["transcript"]["text"] == r.text and d["speech_reading"]["modality"] == "speech"
    # Reading the emotion in a worker thread changes nothing but the timing.
    sequential = SpeechPerception(stt, encoder, parallel=False).perceive(wav_bytes(x, rate), "carol-2")
    assert sequential.text == r.text
    assert np.allclose(sequential.speech_reading.mean, r.speech_reading.mean)
    perception.close()


def test_perception_never_raises_for_bad_audio(stt, encoder):
    perception = SpeechPerception(stt, encoder)
    bad = perception.perceive(b"\x00\x01garbage" * 100, "dave")
    assert bad.transcript is None and bad.speech_reading is None
    assert bad.errors and bad.errors[0].startswith("audio:")
    quiet = perception.perceive((16000, np.zeros(32000, np.int16)), "dave")
    assert quiet.text == "" and quiet.transcript.skipped == "silence"
    assert quiet.speech_reading.variance[0] == UNINFORMATIVE_VARIANCE
    with pytest.raises(AudioDecodeError):  # the underlying decoder still raises for callers who want it
        from empathic_agent.perceive.audio import decode_audio

        decode_audio(b"\x00\x01garbage" * 100)


# ---------------------------------------------------------------------------------------------
# Evaluation on a tiny CSV


def test_speech_eval_on_a_tiny_csv(encoder, say, tmp_path):
    from empathic_agent.cli.speech import eval_speech_csv

    audio = tmp_path / "audio"
    audio.mkdir()
    rows = []
    texts = BASELINE_TEXTS[:6]
    labels = ["neutral", "joy", "sadness", "neutral", "anger", "neutral"]
    for i, (text, label) in enumerate(zip(texts, labels)):
        rate, x = say(text)
        (audio / f"clip{i}.wav").write_bytes(wav_bytes(x, rate))
        rows.append((f"audio/clip{i}.wav", label, "spk1" if i < 3 else "spk2"))
    with_speaker = tmp_path / "eval.csv"
    with open(with_speaker, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "emotion", "speaker"])
        w.writerows(rows)
    without = tmp_path / "eval_nospeaker.csv"
    with open(without, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "emotion"])
        w.writerows(r[:2] for r in rows)

    res = eval_speech_csv(encoder, with_speaker, baseline_size=None)
    assert res["n"] == 6 and 0.0 <= res["accuracy"] <= 1.0 and 0.0 <= res["macro_f1"] <= 1.0
    assert sum(map(sum, res["confusion_matrix"]["matrix"])) == 6
    assert res["speaker_baseline"]["applied"] is True and res["speaker_baseline"]["speakers"] == 2
    assert res["cold_start"]["n"] == 6
    # Two clips of baseline per speaker is below the adapted head's minimum: both speakers read cold.
    assert res["speaker_baseline"]["speakers_below_minimum"] == ["spk1", "spk2"]

    res2 = eval_speech_csv(encoder, without)
    assert res2["speaker_baseline"]["applied"] is False and res2["mode"] == "cold_start"
    assert res2["accuracy"] == res["cold_start"]["accuracy"]

    # The generic evaluation (`empathic encoders eval speech --csv`) reads the same CSV cold.
    from empathic_agent.training.evaluate import evaluate, read_eval_csv

    generic = evaluate(encoder, read_eval_csv(without, encoder.input_kind))
    assert generic["n"] == 6 and generic["accuracy"] == res2["accuracy"]
