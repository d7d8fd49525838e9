"""Audio input hygiene: every format/rate/layout a client sends decodes to a clean 16 kHz mono clip;
silence and too-short audio are typed results; corrupt, oversize and overlong input are clear
`InputError`s.  Test audio is generated here (numpy + PyAV + the standard `wave` module)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from empathic_agent.errors import InputError
from empathic_agent.perceive.audio import (
    TARGET_SAMPLE_RATE,
    AudioClip,
    AudioDecodeError,
    AudioLimits,
    AudioStatus,
    AudioTooLargeError,
    AudioTooLongError,
    EmptyAudioError,
    decode_audio,
)
from empathic_agent.speak.tts import wav_bytes

LEAD_S, SOUND_S, TAIL_S = 0.5, 1.0, 0.5


def burst(rate: int, *, lead: float = LEAD_S, sound: float = SOUND_S, tail: float = TAIL_S,
          amp: float = 0.3, freq: float = 220.0) -> np.ndarray:
    """Silence, a syllable-like amplitude-modulated tone, silence (float32 in [-1, 1])."""
    t = np.arange(int(sound * rate)) / rate
    tone = amp * np.sin(2 * np.pi * freq * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    return np.concatenate([np.zeros(int(lead * rate)), tone, np.zeros(int(tail * rate))]).astype(np.float32)




def encode(fmt: str, codec: str, x: np.ndarray, rate: int, channels: int) -> bytes:
    """Encode mono float samples with PyAV into ``fmt``/``codec`` (duplicated to ``channels``)."""
    layout = "stereo" if channels == 2 else "mono"
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        sample_fmt = stream.codec_context.format.name
        data = np.stack([x] * channels).astype(np.float32)  # (channels, n)
        if "s16" in sample_fmt:
            data = (data * 32767).astype(np.int16)
        elif "s32" in sample_fmt:
            data = (data * 2_147_000_000).astype(np.int32)
        if not sample_fmt.endswith("p"):  # packed: (1, n * channels), interleaved
            data = data.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=sample_fmt, layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


# (container, codec, sample rate, channels, expected format name)
FORMATS = [
    ("wav", "pcm_s16le", 44100, 2, "wav"),
    ("wav", "pcm_s16le", 8000, 1, "wav"),
    ("flac", "flac", 22050, 1, "flac"),
    ("flac", "flac", 96000, 2, "flac"),
    ("ogg", "libopus", 48000, 1, "ogg"),
    ("webm", "libopus", 48000, 2, "webm"),
    ("mp3", "libmp3lame", 44100, 2, "mp3"),
    ("mp3", "libmp3lame", 24000, 1, "mp3"),
]


def check_clean_clip(clip: AudioClip, *, lead: float = LEAD_S, sound: float = SOUND_S, tol: float = 0.06) -> None:
    limits = AudioLimits()
    assert clip.sample_rate == TARGET_SAMPLE_RATE
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.status is AudioStatus.OK and clip.usable
    # Trimmed to the sound plus the documented margin on both sides.
    assert clip.sound_s == pytest.approx(sound, abs=tol)
    assert clip.duration_s == pytest.approx(sound + 2 * limits.trim_margin_s, abs=2 * tol)
    assert clip.trimmed_start_s == pytest.approx(lead - limits.trim_margin_s, abs=tol)
    assert clip.trimmed and clip.trimmed_end_s > 0
    assert 0.05 < float(np.max(np.abs(clip.samples))) < 1.0


@pytest.mark.parametrize("fmt,codec,rate,channels,name", FORMATS, ids=[f"{f[0]}-{f[1]}-{f[2]}-{f[3]}ch" for f in FORMATS])
def test_each_format_rate_and_layout_decodes_to_16k_mono(fmt, codec, rate, channels, name):
    data = encode(fmt, codec, burst(rate), rate, channels)
    clip = decode_audio(data)
    check_clean_clip(clip, tol=0.08 if codec != "pcm_s16le" else 0.04)
    assert name in clip.source_format
    assert clip.source_sample_rate == rate
    assert clip.source_channels == channels
    assert clip.original_duration_s == pytest.approx(LEAD_S + SOUND_S + TAIL_S, abs=0.1)


def test_wav_from_the_standard_library_path_and_file_object(tmp_path):
    data = wav_bytes(burst(16000), 16000)
    path = tmp_path / "hello.wav"
    path.write_bytes(data)
    for source in (data, bytearray(data), path, str(path), io.BytesIO(data)):
        check_clean_clip(decode_audio(source), tol=0.03)


def test_resampling_keeps_the_pitch():
    rate = 44100
    clip = decode_audio(wav_bytes(burst(rate, freq=440.0), rate))
    spectrum = np.abs(np.fft.rfft(clip.samples))
    peak_hz = np.argmax(spectrum) * TARGET_SAMPLE_RATE / len(clip.samples)
    assert peak_hz == pytest.approx(440.0, abs=5.0)


def test_stereo_is_mixed_down_not_left_channel_only():
    rate = 16000
    x = burst(rate)
    stereo = np.stack([np.zeros_like(x), x], axis=1)  # everything on the right channel
    clip = decode_audio(wav_bytes(stereo, rate, channels=2))
    check_clean_clip(clip, tol=0.03)


@pytest.mark.parametrize("dtype", ["int16", "int32", "float32", "float64", "uint8"])
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_gradio_style_array_tuples(dtype, rate):
    x = burst(rate)
    if dtype == "int16":
        arr = (x * 32767).astype(np.int16)
    elif dtype == "int32":
        arr = (x * 2**31 * 0.99).astype(np.int32)
    elif dtype == "uint8":
        arr = np.round(x * 127 + 128).astype(np.uint8)
    else:
        arr = x.astype(dtype)
    clip = decode_audio((rate, arr))
    check_clean_clip(clip, tol=0.04)
    assert clip.source_format == "array" and clip.source_sample_rate == rate and clip.source_channels == 1


def test_array_tuple_stereo_in_either_layout():
    rate = 22050
    x = burst(rate)
    silent = np.zeros_like(x)
    # (n, 2) as Gradio gives it, and (2, n); the sound only on the second channel.
    for arr in (np.stack([silent, x], axis=1), np.stack([silent, x], axis=0)):
        clip = decode_audio((rate, (arr * 32767).astype(np.int16)))
        check_clean_clip(clip, tol=0.04)
        assert clip.source_channels == 2


def test_quiet_but_clean_speech_is_not_silence():
    """A low-gain microphone (peaks around -50 dBFS) over a clean floor still counts as sound."""
    clip = decode_audio((16000, burst(16000, amp=0.004)))
    assert clip.status is AudioStatus.OK
    assert clip.peak_dbfs < -45


@pytest.mark.parametrize("make", [
    lambda r: np.zeros(2 * r, np.float32),                                              # digital silence
    lambda r: (np.random.default_rng(0).standard_normal(2 * r) * 1e-4).astype(np.float32),  # -80 dBFS hiss
    lambda r: (0.05 * np.sin(2 * np.pi * 50 * np.arange(2 * r) / r)).astype(np.float32),    # steady mains hum
    lambda r: (np.random.default_rng(1).standard_normal(2 * r) * 0.03).astype(np.float32),  # loud fan noise
], ids=["digital", "hiss", "hum", "fan"])
def test_silence_is_a_typed_result_not_an_error(make):
    clip = decode_audio(wav_bytes(make(16000), 16000))
    assert clip.status is AudioStatus.SILENCE
    assert not clip.usable
    assert clip.info()["status"] == "silence"


def test_too_short_sound_is_a_typed_result():
    rate = 16000
    click = burst(rate, lead=0.4, sound=0.1, tail=0.5)
    clip = decode_audio(wav_bytes(click, rate))
    assert clip.status is AudioStatus.TOO_SHORT
    assert not clip.usable and clip.sound_s < AudioLimits().min_speech_s
    # A stricter or looser limit changes the verdict: the threshold is really applied.
    assert decode_audio(wav_bytes(click, rate), limits=AudioLimits(min_speech_s=0.05)).usable


def test_zero_length_recordings_are_too_short():
    assert decode_audio((16000, np.zeros(0, np.int16))).status is AudioStatus.TOO_SHORT
    assert decode_audio(wav_bytes(np.zeros(0, np.float32), 16000)).status is AudioStatus.TOO_SHORT


@pytest.mark.parametrize("data", [
    np.random.default_rng(1).bytes(4000),
    b"this is not audio at all " * 40,
    b"RIFF\x24\x08\x00\x00WAVEfmt " + np.random.default_rng(2).bytes(600),
    b"ID3\x03\x00\x00\x00" + np.random.default_rng(3).bytes(3000),
    b"OggS" + bytes(500),
], ids=["random", "text", "broken-wav-header", "broken-mp3", "broken-ogg"])
def test_corrupt_bytes_raise_a_clear_input_error(data):
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(data)
    assert isinstance(info.value, InputError)
    assert "could not be" in str(info.value) or "no audio" in str(info.value)


def test_truncated_upload_keeps_what_arrived():
    data = encode("flac", "flac", burst(16000, tail=1.0), 16000, 1)
    clip = decode_audio(data[: len(data) * 3 // 4])
    assert clip.usable and 0.5 < clip.original_duration_s < 2.6


def test_empty_inputs():
    for source in (None, b"", bytearray()):
        with pytest.raises(EmptyAudioError):
            decode_audio(source)


def test_missing_file_and_unsupported_types(tmp_path):
    with pytest.raises(AudioDecodeError, match="not found"):
        decode_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioDecodeError):
        decode_audio(12345)  # type: ignore[arg-type]
    with pytest.raises(AudioDecodeError):
        decode_audio((16000, np.array(["a", "b"])))
    with pytest.raises(AudioDecodeError, match="sample rate"):
        decode_audio((0, np.zeros(100, np.int16)))
    with pytest.raises(AudioDecodeError, match="NaN"):
        decode_audio((16000, np.array([0.1, np.nan, 0.2], np.float32)))


def test_oversize_bytes_and_files_are_rejected_before_decoding(tmp_path):
    data = wav_bytes(burst(16000), 16000)
    limits = AudioLimits(max_bytes=len(data) - 1)
    with pytest.raises(AudioTooLargeError, match="limit"):
        decode_audio(data, limits=limits)
    path = tmp_path / "big.wav"
    path.write_bytes(data)
    with pytest.raises(AudioTooLargeError):
        decode_audio(path, limits=limits)
    with pytest.raises(AudioTooLargeError):
        decode_audio((16000, np.zeros(1000, np.float32)), limits=AudioLimits(max_bytes=3000))
    assert decode_audio(data, limits=AudioLimits(max_bytes=len(data))).usable


def test_overlong_audio_is_rejected():
    limits = AudioLimits(max_duration_s=1.5)
    long_wav = wav_bytes(burst(16000, lead=0.5, sound=1.5, tail=0.5), 16000)  # 2.5 s
    with pytest.raises(AudioTooLongError, match="limit is 2 s|limit is 1"):
        decode_audio(long_wav, limits=limits)
    with pytest.raises(AudioTooLongError):
        decode_audio(encode("ogg", "libopus", burst(48000, sound=1.5), 48000, 1), limits=limits)
    with pytest.raises(AudioTooLongError):
        decode_audio((16000, np.zeros(16000 * 2, np.int16)), limits=limits)
    assert decode_audio(long_wav, limits=AudioLimits(max_duration_s=3.0)).usable


def test_clip_is_immutable_and_reports_plain_json():
    clip = decode_audio(wav_bytes(burst(16000), 16000))
    with pytest.raises(ValueError):
        clip.samples[0] = 1.0
    info = clip.info()
    assert info["status"] == "ok" and info["sample_rate"] == 16000
    assert all(isinstance(v, (int, float, str, type(None))) for v in info.values())
    assert decode_audio(clip) is clip


def test_trimming_can_be_switched_off():
    clip = decode_audio(wav_bytes(burst(16000), 16000), limits=AudioLimits(trim=False))
    assert clip.duration_s == pytest.approx(LEAD_S + SOUND_S + TAIL_S, abs=0.01)
    assert not clip.trimmed
