"""Speak: the agent's emotional voice — a reply's text and a target VAD in, prosodic speech out.

* :mod:`~empathic_agent.speak.tts` — the :class:`TTS` base class, :class:`Prosody` and
  :class:`SpeechAudio`, the voice registry (:func:`available_voices`, :func:`load_tts`);
* :mod:`~empathic_agent.speak.prosody` — the mapping target VAD -> prosody (:func:`prosody_for`)
  and the voice profiles (``voices/*.toml``);
* :mod:`~empathic_agent.speak.text` — speakable text (markup, links, emoji, numbers), sentences, cap;
* :mod:`~empathic_agent.speak.stream` — sentence-by-sentence streaming (:func:`speak_stream`);
* :mod:`~empathic_agent.speak.roundtrip` — the round-trip check (synthesise, measure, read back);
* backends: :mod:`~empathic_agent.speak.piper_tts` (neural, default) and
  :mod:`~empathic_agent.speak.espeak_tts` (formant synthesiser) — imported only when a voice
  that needs them is loaded.
"""

from empathic_agent.speak.prosody import VoiceProfile, available_profiles, load_profile, prosody_for
from empathic_agent.speak.stream import SpeechFailure, StreamStats, speak_stream
from empathic_agent.speak.text import MAX_SPOKEN_CHARS, prepare_speech, speakable, split_sentences
from empathic_agent.speak.tts import (
    TTS,
    Prosody,
    SpeechAudio,
    TTSCapabilities,
    TTSError,
    available_tts_backends,
    available_voices,
    load_tts,
    register_tts_backend,
)

__all__ = [
    "TTS",
    "TTSError",
    "TTSCapabilities",
    "Prosody",
    "SpeechAudio",
    "available_voices",
    "available_tts_backends",
    "register_tts_backend",
    "load_tts",
    "VoiceProfile",
    "load_profile",
    "available_profiles",
    "prosody_for",
    "speak_stream",
    "SpeechFailure",
    "StreamStats",
    "speakable",
    "split_sentences",
    "prepare_speech",
    "MAX_SPOKEN_CHARS",
]
