"""The espeak-ng backend: a formant synthesiser run as a separate program.

espeak-ng (Debian package ``espeak-ng``; GPL-3.0, run as a subprocess, never linked) has no
weights, starts in milliseconds and controls prosody natively, so it is the voice that always
works — robotic, but intelligible.  One call per synthesis::

    espeak-ng --stdout --stdin -m -b 1 -v en-us -s WPM -p PITCH -a AMPLITUDE
        <<< '<speak><prosody range="NN%">text</prosody></speak>'

* **rate** -> ``-s`` words per minute (profile option ``words_per_minute`` x rate);
* **pitch level** -> ``-p`` (0-99, default 50).  The scale is espeak's own, not semitones:
  measured on en-us, one unit is ~0.17 semitone around the middle (``-p 25/50/75`` -> F0
  medians -4.8 / -0.8 / +3.8 st re 100 Hz), so ``p = 50 + shift / 0.17`` (the profile's
  ``semitones_per_pitch_unit``), kept within 10-90 (the extremes misbehave: ``-p 0`` gives
  octave jumps);
* **pitch range** -> SSML ``<prosody range="NN%">`` (measured: 50 % -> 0.53x, 200 % -> 1.9x
  the F0 range);
* **gain** -> ``-a`` amplitude (0-200, linear: 100 x 10^(dB/20) on top of ``level_db``);
* **variation**: no equivalent (espeak's intonation is rule-based) — ignored;
* **brightness**: done by the base class (spectral tilt).

The WAV that espeak-ng writes to stdout is parsed by hand (:func:`parse_wav`), because a
streamed WAV header may carry placeholder sizes.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from typing import Final
from xml.sax.saxutils import escape

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import BackendUnavailableError
from empathic_agent.speak.prosody import VoiceProfile
from empathic_agent.speak.tts import TTS, Prosody, TTSCapabilities, TTSError

__all__ = ["EspeakTTS", "parse_wav", "espeak_arguments", "ESPEAK_INSTALL_HINT"]

ESPEAK_INSTALL_HINT: Final[str] = ("espeak-ng is not installed: apt-get install espeak-ng "
                                   "(Debian/Ubuntu; brew install espeak-ng on macOS)")
#: espeak's pitch parameter range we allow (its 0-99 extremes produce octave jumps).
PITCH_MIN: Final[int] = 10
PITCH_MAX: Final[int] = 90
#: Words per minute espeak accepts sensibly (it clamps below 80; above ~450 it is a blur).
WPM_MIN: Final[int] = 80
WPM_MAX: Final[int] = 450
#: Amplitude range of ``-a`` (espeak: 0-200).
AMPLITUDE_MIN: Final[int] = 1
AMPLITUDE_MAX: Final[int] = 200
#: SSML range percentage limits (0 % = monotone; beyond 300 % espeak saturates).
RANGE_PCT_MIN: Final[int] = 10
RANGE_PCT_MAX: Final[int] = 300
#: Seconds allowed per synthesis: a fixed start-up allowance plus time per character (espeak
#: speaks ~100x faster than real time; these only catch a hung process).
TIMEOUT_BASE_S: Final[float] = 10.0
TIMEOUT_PER_CHAR_S: Final[float] = 0.01


def espeak_arguments(profile: VoiceProfile, prosody: Prosody) -> tuple[list[str], int]:
    """(command-line flags after the executable, SSML range percent) for ``prosody``."""
    opts = profile.options
    wpm = int(round(float(opts.get("words_per_minute", 165)) * prosody.rate))
    st_per_unit = float(opts.get("semitones_per_pitch_unit", 0.17))
    pitch = int(round(float(opts.get("pitch", 50)) + prosody.pitch_shift_st / st_per_unit))
    level_db = float(opts.get("level_db", 0.0)) + prosody.gain_db
    amplitude = int(round(float(opts.get("amplitude", 100)) * 10.0 ** (level_db / 20.0)))
    range_pct = int(round(100.0 * prosody.pitch_range))
    args = ["--stdout", "--stdin", "-m", "-b", "1", "-v", profile.model,
            "-s", str(int(np.clip(wpm, WPM_MIN, WPM_MAX))),
            "-p", str(int(np.clip(pitch, PITCH_MIN, PITCH_MAX))),
            "-a", str(int(np.clip(amplitude, AMPLITUDE_MIN, AMPLITUDE_MAX)))]
    return args, int(np.clip(range_pct, RANGE_PCT_MIN, RANGE_PCT_MAX))


def parse_wav(data: bytes) -> tuple[int, NDArray[np.float32]]:
    """(sample_rate, mono float32 samples) of a PCM WAV, tolerating placeholder chunk sizes."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TTSError(f"espeak-ng did not write a WAV file (got {len(data)} bytes)")
    pos, rate, channels, bits = 12, 0, 1, 16
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt, channels, rate = struct.unpack("<HHI", data[body:body + 8])
            bits = struct.unpack("<H", data[body + 14:body + 16])[0]
            if fmt != 1 or bits != 16:
                raise TTSError(f"espeak-ng wrote an unsupported WAV format (format {fmt}, {bits} bits)")
        elif cid == b"data":
            if not rate:
                raise TTSError("espeak-ng's WAV has no fmt chunk before its data")
            end = len(data) if size in (0, 0xFFFFFFFF) or body + size > len(data) else body + size
            raw = data[body:end]
            raw = raw[: len(raw) - len(raw) % (2 * channels)]
            x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
            if channels > 1:
                x = x.reshape(-1, channels).mean(axis=1)
            return rate, x
        pos = body + size + (size & 1)
    raise TTSError("espeak-ng's WAV has no data chunk")


class EspeakTTS(TTS):
    """espeak-ng through a subprocess; see the module docstring."""

    name = "espeak-ng"
    capabilities = TTSCapabilities(rate=True, pitch=True, pitch_range=True, gain=True, variation=False,
                                   brightness=False, sentence_chunks=False)

    def __init__(self, profile: VoiceProfile, *, executable: str | None = None) -> None:
        super().__init__(profile)
        self.executable = executable or str(profile.options.get("executable", "espeak-ng"))
        self.path: str | None = None

    def _load_impl(self) -> None:
        path = shutil.which(self.executable)
        if path is None:
            raise BackendUnavailableError(ESPEAK_INSTALL_HINT)
        probe = subprocess.run([path, "--version"], capture_output=True, timeout=TIMEOUT_BASE_S)
        if probe.returncode != 0:
            raise TTSError(f"{path} --version failed: {probe.stderr.decode(errors='replace').strip()}")
        self.path = path

    def _synthesize_impl(self, text: str, prosody: Prosody) -> tuple[int, NDArray[np.float32]]:
        assert self.path is not None
        args, range_pct = espeak_arguments(self.profile, prosody)
        ssml = f'<speak><prosody range="{range_pct}%">{escape(text)}</prosody></speak>'
        try:
            proc = subprocess.run([self.path, *args], input=ssml.encode("utf-8"), capture_output=True,
                                  timeout=TIMEOUT_BASE_S + TIMEOUT_PER_CHAR_S * len(text))
        except subprocess.TimeoutExpired as exc:
            raise TTSError(f"espeak-ng did not finish within {exc.timeout:.0f} s") from None
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", errors="replace").strip()
            raise TTSError(f"espeak-ng exited with code {proc.returncode}: {err or 'no message'} "
                           f"(voice {self.profile.model!r}; list voices with espeak-ng --voices)")
        return parse_wav(proc.stdout)
