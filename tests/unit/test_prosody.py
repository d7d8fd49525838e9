"""The latent -> prosody mapping, the voice profiles, and the prosody/audio data and signal helpers."""

from __future__ import annotations

import dataclasses
import io
import wave

import numpy as np
import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.latent import Reading
from empathic_agent.speak.prosody import (
    BUILTIN_PROFILES,
    FACTOR_FIELDS,
    PROSODY_FIELDS,
    SAFE_LIMITS,
    VOICES_DIR,
    VoiceProfile,
    available_profiles,
    load_profile,
    parse_profile,
    prosody_for,
    target_vad,
)
from empathic_agent.speak.tts import (
    Prosody,
    SpeechAudio,
    TTSError,
    apply_brightness,
    apply_gain,
    available_voices,
    load_tts,
    register_tts_backend,
    soft_limit,
)
from empathic_agent.testing import FakeTTS

VOICES = sorted(BUILTIN_PROFILES)
DIMS = ("valence", "arousal", "dominance")


def _vad(dim: int, value: float) -> tuple[float, float, float]:
    v = [0.0, 0.0, 0.0]
    v[dim] = value
    return tuple(v)  # type: ignore[return-value]


# --- the mapping -------------------------------------------------------------------------------
@pytest.mark.parametrize("voice", VOICES)
@pytest.mark.parametrize("dim", range(3))
def test_mapping_is_monotonic_in_each_dimension(voice, dim):
    """Each parameter moves in the direction of its gain along every dimension (never backwards),
    and strictly while it is not clipped."""
    profile = BUILTIN_PROFILES[voice]
    grid = np.linspace(-1, 1, 41)
    mapped = [prosody_for(_vad(dim, x), profile) for x in grid]
    values = {p: np.array([getattr(m, p) for m in mapped]) for p in PROSODY_FIELDS}
    for p in PROSODY_FIELDS:
        gain = profile.gains.get(p, (0, 0, 0))[dim]
        steps = np.diff(values[p])
        if gain > 0:
            assert np.all(steps >= -1e-12), (p, DIMS[dim])
        elif gain < 0:
            assert np.all(steps <= 1e-12), (p, DIMS[dim])
        else:
            assert np.allclose(steps, 0), (p, DIMS[dim])
        lo, hi = profile.limits[p]
        inside = (values[p][1:] > lo + 1e-9) & (values[p][1:] < hi - 1e-9) & \
                 (values[p][:-1] > lo + 1e-9) & (values[p][:-1] < hi - 1e-9)
        if gain != 0 and inside.any():
            assert np.all(np.abs(steps[inside]) > 0), (p, DIMS[dim])


@pytest.mark.parametrize("voice", VOICES)
def test_mapping_directions_follow_the_literature(voice):
    """Arousal: faster, higher, wider, louder; valence: higher, wider, darker (relaxed); dominance:
    lower and louder."""
    p = BUILTIN_PROFILES[voice]
    low, high = prosody_for((0, -0.6, 0), p), prosody_for((0, 0.6, 0), p)
    assert low.rate < 1 < high.rate
    assert low.pitch_shift_st < 0 < high.pitch_shift_st
    assert low.pitch_range < 1 < high.pitch_range
    assert low.gain_db < 0 < high.gain_db
    neg, pos = prosody_for((-0.6, 0, 0), p), prosody_for((0.6, 0, 0), p)
    assert neg.pitch_shift_st < pos.pitch_shift_st and neg.pitch_range < pos.pitch_range
    assert neg.brightness_db_oct > pos.brightness_db_oct
    sub, dom = prosody_for((0, 0, -0.6), p), prosody_for((0, 0, 0.6), p)
    assert dom.pitch_shift_st < sub.pitch_shift_st and dom.gain_db > sub.gain_db


@pytest.mark.parametrize("voice", VOICES)
def test_neutral_target_is_the_base_delivery(voice):
    profile = BUILTIN_PROFILES[voice]
    assert prosody_for((0, 0, 0), profile) == profile.base


@pytest.mark.parametrize("voice", VOICES)
def test_extreme_targets_are_clipped_to_safe_limits(voice):
    profile = BUILTIN_PROFILES[voice]
    for corner in np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).T.reshape(-1, 3):
        pr = prosody_for(corner * 5.0, profile)  # out-of-range targets are clipped to [-1, 1]
        assert pr == prosody_for(corner, profile)
        for p in PROSODY_FIELDS:
            lo, hi = profile.limits[p]
            safe_lo, safe_hi = SAFE_LIMITS[p]
            assert safe_lo <= lo <= getattr(pr, p) <= hi <= safe_hi


def test_some_limits_are_reached_at_the_extremes():
    """The clipping is active, not decorative: full arousal hits the loudness ceiling."""
    profile = BUILTIN_PROFILES["piper-joe-medium"]
    assert prosody_for((0, 1, 0), profile).gain_db == profile.limits["gain_db"][1]


def test_pace_scales_rate_and_is_clipped():
    profile = BUILTIN_PROFILES["piper-joe-medium"]
    base = prosody_for((0, 0, 0), profile).rate
    assert prosody_for((0, 0, 0), profile, pace=0.9).rate == pytest.approx(0.9 * base)
    assert prosody_for((0, 0, 0), profile, pace=10).rate == profile.limits["rate"][1]
    with pytest.raises(ValueError):
        prosody_for((0, 0, 0), profile, pace=0)


def test_pace_words_and_planned_registers():
    from types import SimpleNamespace

    profile = BUILTIN_PROFILES["piper-joe-medium"]
    # The planner's Register carries ``target`` (VAD) and ``pace`` (a word); duck-typed here.
    register = SimpleNamespace(strategy="reflection", target=(0.2, -0.3, 0.0), tone=("warm",), pace="slow")
    expected = prosody_for((0.2, -0.3, 0.0), profile, pace=0.95)
    assert prosody_for(register, profile) == expected
    assert prosody_for(register, profile, pace="moderate") == prosody_for((0.2, -0.3, 0.0), profile)
    assert prosody_for((0, 0, 0), profile, pace="lively").rate > prosody_for((0, 0, 0), profile).rate
    with pytest.raises(ValueError, match="unknown pace"):
        prosody_for((0, 0, 0), profile, pace="frantic")


def test_target_accepts_readings_mappings_and_sequences():
    reading = Reading(mean=(0.3, -0.4, 0.1), variance=(0.1, 0.1, 0.1), categories={"joy": 1.0},
                      modality="fused")
    assert np.allclose(target_vad(reading), (0.3, -0.4, 0.1))
    assert np.allclose(target_vad({"arousal": 0.5}), (0.0, 0.5, 0.0))
    assert np.allclose(target_vad(np.array([2.0, -3.0, 0.0])), (1.0, -1.0, 0.0))
    assert prosody_for(reading) == prosody_for((0.3, -0.4, 0.1))
    for bad in ((0.1, 0.2), (float("nan"), 0, 0), "abc", {"joy": 1.0}):
        with pytest.raises(ValueError):
            target_vad(bad)


def test_factor_gains_are_in_octaves():
    """+1 arousal with a rate gain g multiplies the rate by 2**g (symmetric: -1 divides by it)."""
    profile = dataclasses.replace(BUILTIN_PROFILES["piper-joe-medium"], gains={"rate": (0, 0.25, 0)},
                                  limits={"rate": (0.6, 1.6)})
    assert "rate" in FACTOR_FIELDS
    assert prosody_for((0, 1, 0), profile).rate == pytest.approx(2**0.25)
    assert prosody_for((0, -1, 0), profile).rate == pytest.approx(2**-0.25)


# --- profiles ------------------------------------------------------------------------------------
@pytest.mark.parametrize("voice", VOICES)
def test_profile_files_parse_and_equal_the_builtins(voice):
    path = VOICES_DIR / f"{voice}.toml"
    assert path.is_file(), f"voices/{voice}.toml is missing"
    from_file = load_profile(path)
    assert from_file == BUILTIN_PROFILES[voice]
    assert from_file.source == str(path)
    assert load_profile(voice) == BUILTIN_PROFILES[voice]  # by name: the checkout's file
    assert from_file.licence and "GPL-3.0" in from_file.licence


def test_every_profile_file_is_a_builtin():
    files = {p.stem for p in VOICES_DIR.glob("*.toml")}
    assert files == set(BUILTIN_PROFILES)
    assert set(available_profiles()) == files
    assert available_voices() == available_profiles()


def test_builtins_are_used_without_the_checkout(monkeypatch, tmp_path):
    import empathic_agent.speak.prosody as prosody

    monkeypatch.setattr(prosody, "VOICES_DIR", tmp_path / "nowhere")
    profile = prosody.load_profile("espeak-ng")
    assert profile.source == "built-in" and profile == BUILTIN_PROFILES["espeak-ng"]
    assert prosody.available_profiles() == sorted(BUILTIN_PROFILES)


def test_unknown_voice_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="piper-joe-medium"):
        load_profile("no-such-voice")


def test_profile_to_dict_round_trips():
    for profile in BUILTIN_PROFILES.values():
        assert parse_profile(profile.to_dict()) == profile


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(colour="blue"), "unknown keys"),
    (lambda d: d["gains"].update(rate=[0.1, 0.2]), "3 finite numbers"),
    (lambda d: d["gains"].update(timbre=[0, 0, 0]), "unknown prosody parameter"),
    (lambda d: d["limits"].update(rate=[0.1, 5.0]), "safe range"),
    (lambda d: d["limits"].update(gain_db=[3.0, -3.0]), "safe range"),
    (lambda d: d["base"].update(rate=-1.0), "must be > 0"),
    (lambda d: d.update(backend=""), "backend"),
])
def test_invalid_profiles_are_rejected_with_a_clear_message(mutate, message):
    data = BUILTIN_PROFILES["espeak-ng"].to_dict()
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        parse_profile(data, source="test.toml")


def test_invalid_toml_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_profile(tmp_path / "missing.toml")


def test_a_user_profile_file_with_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nbackend = "espeak-ng"\nmodel = "en-gb"\n[gains]\nrate = [0, 0.5, 0]\n')
    profile = load_profile(path)
    assert profile.model == "en-gb" and profile.base == Prosody()
    assert prosody_for((0, 1, 0), profile).rate == pytest.approx(2**0.5)
    assert prosody_for((1, 0, 0), profile).pitch_shift_st == 0.0  # no gain: no change


def test_a_piper_onnx_path_gets_the_default_mapping(tmp_path):
    onnx = tmp_path / "en_GB-me.onnx"
    onnx.write_bytes(b"x")
    profile = load_profile(str(onnx))
    assert profile.backend == "piper" and profile.model == str(onnx) and profile.name == "en_GB-me"
    assert profile.gains == BUILTIN_PROFILES["piper-joe-medium"].gains


# --- prosody and audio data --------------------------------------------------------------------
def test_prosody_validation():
    assert Prosody().is_neutral
    for bad in (dict(rate=0), dict(pitch_range=-1), dict(gain_db=float("inf")), dict(variation=float("nan"))):
        with pytest.raises(ValueError):
            Prosody(**bad)


def test_speech_audio_is_read_only_and_writes_wav(tmp_path):
    audio = SpeechAudio(16000, np.linspace(-1.5, 1.5, 1600), "hi", "v")
    assert audio.samples.dtype == np.float32 and not audio.samples.flags.writeable
    assert audio.duration_s == pytest.approx(0.1)
    path = audio.write_wav(tmp_path / "a.wav")
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 1, 2, 1600)
        data = np.frombuffer(w.readframes(1600), dtype=np.int16)
    assert data.max() == 32767 and data.min() == -32767  # clipped into range, not wrapped
    with wave.open(io.BytesIO(audio.to_wav_bytes())) as w:
        assert w.getnframes() == 1600
    with pytest.raises(ValueError):
        SpeechAudio(0, np.zeros(3))


def _band_db(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return 10 * np.log10(spec[(f >= lo) & (f < hi)].sum())


def test_brightness_tilts_the_spectrum_and_keeps_the_level():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(22050)).astype(np.float32)
    bright = apply_brightness(x, 22050, 4.0)
    dark = apply_brightness(x, 22050, -4.0)
    for y in (bright, dark):
        assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
    tilt = lambda y: _band_db(y, 22050, 4000, 8000) - _band_db(y, 22050, 250, 500)  # noqa: E731
    # 4 kHz-8 kHz vs 250-500 Hz is ~4 octaves apart: about 4 dB/oct * 4 = 16 dB more tilt.
    assert tilt(bright) - tilt(x) == pytest.approx(16, abs=3)
    assert tilt(x) - tilt(dark) == pytest.approx(16, abs=3)
    assert np.array_equal(apply_brightness(x, 22050, 0.0), x)


def test_gain_and_soft_limiter():
    x = np.linspace(-1, 1, 1001, dtype=np.float32)
    assert np.allclose(apply_gain(x, -6.0206), x / 2, atol=1e-4)
    y = soft_limit(apply_gain(x, 12))
    assert np.abs(y).max() <= 0.95
    assert np.all(np.diff(y) >= 0)  # monotonic: no fold-over
    quiet = x * 0.5
    assert np.array_equal(soft_limit(quiet), quiet)  # transparent below the knee


# --- the base class, with the fake backend ------------------------------------------------------
def test_base_class_normalises_times_and_post_processes():
    tts = FakeTTS()
    audio = tts.synthesize("**Hello** 😊 there, it's 5pm", Prosody(pitch_shift_st=2.0, gain_db=-6.0))
    assert audio.text == "Hello there, it's five pm"
    assert tts.calls == [("Hello there, it's five pm", Prosody(pitch_shift_st=2.0, gain_db=-6.0))]
    assert {"synth_s", "post_s", "total_s", "audio_s", "rtf", "load_s"} <= set(audio.timings)
    # The fake does not claim gain: the base class applies it.
    assert np.abs(audio.samples).max() == pytest.approx(0.3 * 10 ** (-6 / 20), rel=1e-3)
    assert audio.voice == "fake" and not audio.truncated


def test_nothing_to_say_is_an_empty_result_not_an_error():
    tts = FakeTTS()
    audio = tts.synthesize("🙂 🎉")
    assert audio.empty and audio.text == "" and tts.calls == []


def test_vendor_errors_are_translated():
    tts = FakeTTS(error=RuntimeError("onnx exploded"))
    with pytest.raises(TTSError, match="onnx exploded"):
        tts.synthesize("Hello.")
    with pytest.raises(TypeError):
        FakeTTS().synthesize(b"bytes")  # type: ignore[arg-type]


def test_long_text_is_capped():
    audio = FakeTTS(seconds_per_char=0.001).synthesize("This sentence is long enough. " * 100)
    assert audio.truncated and len(audio.text) <= 600


def test_registry_builds_backends_from_profiles():
    register_tts_backend("fake", lambda profile, settings: FakeTTS(profile))
    profile = dataclasses.replace(BUILTIN_PROFILES["espeak-ng"], name="fakevoice", backend="fake")
    tts = load_tts(profile)
    assert isinstance(tts, FakeTTS) and tts.voice == "fakevoice"
    with pytest.raises(ConfigError, match="unknown TTS backend"):
        load_tts(dataclasses.replace(profile, backend="nope"))
    with pytest.raises(ConfigError, match="available voices"):
        load_tts("nope")


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        BUILTIN_PROFILES["espeak-ng"].name = "x"  # type: ignore[misc]
    assert isinstance(BUILTIN_PROFILES["espeak-ng"], VoiceProfile)
