"""Perceive: turn what the person sent into clean inputs and the first readings of a turn.

* ``text`` — input hygiene of typed messages (:func:`clean_text`);
* ``audio`` — decoding and validation of voice messages (PyAV), level checks, trimming;
* ``stt`` — speech-to-text backends (Whisper), one registry;
* ``image`` — decoding and validation of camera frames; ``face`` — face detection and the face
  perception step (:class:`~empathic_agent.perceive.face.FacePerception`);
* ``speech`` — the spoken-turn perception step: transcript + speech emotion
  (:class:`~empathic_agent.perceive.speech.SpeechPerception`).

Submodules load what they need lazily: importing this package imports only the text hygiene.
"""

from empathic_agent.perceive.text import clean_text

__all__ = ["clean_text"]
