"""The speech emotion encoder: how something was said -> a `Reading` (modality "speech").

Features of one utterance (:class:`SpeechFeatureExtractor`, ~50-100 ms for a few seconds):

* **prosody** (:data:`PROSODY_NAMES`, 30 numbers, praat-parselmouth + numpy): F0 level, spread,
  range, slope and movement (semitones), loudness level/spread/range/slope/movement, voice
  quality (jitter, shimmer, harmonics-to-noise ratio), spectral balance (alpha ratio,
  Hammarberg index, centroid, flatness, flux) and tempo (syllable-nucleus rate, pauses);
* **Whisper-base encoder embeddings** from *intermediate* layers, pooled over time (mean and
  standard deviation of the 512-d frames of each chosen layer).  Whisper's last encoder layer is
  tuned for transcription; its middle layers carry much more about *how* something was said
  (measured here: 7-class accuracy on unseen speakers ~.72 with the last layer, ~.80 with layers
  2 and 4 — see the model card).  CTranslate2 returns only the encoder's output, so for each
  chosen layer k the Whisper weights the transcriber uses are copied once into a model whose
  encoder stops after layer k (:func:`prepare_truncated_whisper`; a ~25 MB file in the cache,
  built from the packaged model, decoder reduced to a stub).  The encoder runs over only the
  frames that hold audio (CTranslate2 accepts fewer than 3000 frames), and the log-mel
  spectrogram is shared with the transcriber when the perception pipeline runs both.

A small head trained on RAVDESS (`training.speech`: actor-disjoint splits, model selection by
cross-validation over actor folds) maps features to the seven categories.  Two heads are
committed in ``weights/speech/``:

* **cold start** — features standardised with population statistics;
* **speaker-adapted** — features normalised against *this speaker's own* running baseline
  (:class:`VoiceBaseline`: mean and variance of the features of the speaker's earlier
  utterances, unlabelled).  Voices differ more between people than between one person's
  emotions; subtracting the speaker's baseline removes most of that.  The baseline is shrunk
  towards the population statistics (:meth:`VoiceBaseline.normaliser`) and the adapted head is
  used once it holds ``min_baseline_clips`` clips (chosen by training; see ``config.json``).

Baselines are persisted per user in a small SQLite file
(:class:`empathic_agent.memory.voice_baselines.VoiceBaselineStore`, under
``settings.memory_dir / "voice_baselines"``), with export and deletion for users' data rights.
The perception step of a spoken turn (transcript + this reading) is
:class:`empathic_agent.perceive.speech.SpeechPerception`.

Modules: ``prosody`` (prosody features), ``whisper_layers`` (Whisper layer embeddings),
``features`` (the feature vector), ``baseline`` (speaker baselines), ``head`` (the heads, doubt,
reading), ``encoder`` (:class:`SpeechEncoder`).

From probabilities to a reading (uncertainty):

1. categories -> VAD with the latent space's prototype mixture (``categories_to_vad``):
   hesitating between distant categories already widens the variance;
2. a **doubt** ``u`` in [0, 1] from measured properties of the audio — short (little sound),
   noisy (low SNR), flat (no loudness movement or no voicing: a hum, a tone, a hiss; a flat
   pitch counts half) — and from the absence of a speaker baseline (cold start is less
   reliable), combined as independent reasons to doubt: ``u = 1 - prod(1 - u_i)``;
3. the reading is the moment-matched mixture of the model's reading (weight ``1-u``) and the
   uninformed prior (weight ``u``: neutral mean, variance of a uniform spread over [-1, 1],
   uniform categories), as the text encoder does.  Silence gives an uninformative reading.

Nothing heavy is imported at module level (parselmouth, ctranslate2, faster-whisper load on
first use).  Licence note: the committed heads are trained on RAVDESS (CC BY-NC-SA 4.0):
non-commercial use only — see ``weights/speech/MODEL_CARD.md``.
"""

from empathic_agent.encode.speech.baseline import VoiceBaseline, leave_one_out_normalise
from empathic_agent.encode.speech.encoder import SpeechAnalysis, SpeechEncoder
from empathic_agent.encode.speech.features import (
    FEATURE_FORMAT,
    SpeechFeatureExtractor,
    SpeechFeatures,
    feature_names,
    feature_version,
)
from empathic_agent.encode.speech.head import DEFAULT_WEIGHTS_DIR, SpeechHead, doubt_of, reading_from_probabilities
from empathic_agent.encode.speech.prosody import PROSODY_NAMES, extract_prosody
from empathic_agent.encode.speech.whisper_layers import (
    WHISPER_DIM,
    WHISPER_MODEL,
    WhisperLayers,
    prepare_truncated_whisper,
)

__all__ = [
    "FEATURE_FORMAT",
    "PROSODY_NAMES",
    "WHISPER_DIM",
    "WHISPER_MODEL",
    "DEFAULT_WEIGHTS_DIR",
    "feature_version",
    "feature_names",
    "extract_prosody",
    "prepare_truncated_whisper",
    "WhisperLayers",
    "SpeechFeatures",
    "SpeechFeatureExtractor",
    "VoiceBaseline",
    "leave_one_out_normalise",
    "SpeechHead",
    "doubt_of",
    "reading_from_probabilities",
    "SpeechAnalysis",
    "SpeechEncoder",
]
