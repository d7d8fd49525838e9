"""Sentence-by-sentence streaming speech: the voice starts while the LLM is still writing.

:func:`speak_stream` takes the reply as an async iterator of text chunks (the LLM's stream) and
yields one :class:`~empathic_agent.speak.tts.SpeechAudio` per sentence as soon as that sentence
is complete and synthesised.  Three stages run concurrently::

    text chunks --(reader task: SentenceSplitter)--> sentences
                --(synthesiser task: TTS in a worker thread)--> audio   --(generator)--> caller

* the **reader** consumes the text stream and hands out each complete sentence
  (:class:`~empathic_agent.speak.text.SentenceSplitter`) — it keeps reading while a sentence is
  being synthesised, so the LLM is never held up by the voice;
* the **synthesiser** makes each sentence speakable, applies the spoken-length cap, and runs the
  blocking synthesis in a worker thread (``asyncio.to_thread``), so the event loop stays free;
  it works up to :data:`AUDIO_LOOKAHEAD` sentences ahead of the caller, so sentence n+1 is ready
  while sentence n plays;
* the **generator** yields results in order.

It never raises into the caller (a voice is an optional stage: the turn still has its text): a
sentence whose synthesis fails yields a :class:`SpeechFailure` marker and the stream goes on; after
:data:`MAX_CONSECUTIVE_FAILURES` failures in a row (the voice is broken, not the sentence) it stops
with a final ``fatal`` marker.  A failing text stream also ends with a failure marker.

Latency: :class:`StreamStats` records when the first sentence became available and when its audio
was ready; ``first_audio_latency_s`` (the voice's share of the time to first audio) is also put in
the first chunk's ``timings``.

The text iterator is not consumed past the spoken-length cap (the stream stops there); feed the
displayed text from its own copy of the LLM stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, AsyncIterable, AsyncIterator, Final, Iterable

from empathic_agent.speak.text import (
    MAX_SENTENCE_CHARS,
    MAX_SPOKEN_CHARS,
    SentenceSplitter,
    first_clause,
    speakable,
)
from empathic_agent.speak.tts import TTS, Prosody, SpeechAudio

__all__ = ["SpeechFailure", "StreamStats", "speak_stream", "AUDIO_LOOKAHEAD", "MAX_CONSECUTIVE_FAILURES"]

log = logging.getLogger(__name__)

#: Sentences synthesised ahead of the caller (audio queued, waiting to be yielded): enough for
#: gapless playback, small enough not to waste work when the caller stops early.
AUDIO_LOOKAHEAD: Final[int] = 2
#: Failed sentences in a row after which the voice is considered broken and the stream stops.
MAX_CONSECUTIVE_FAILURES: Final[int] = 2

_END: Final[object] = object()


@dataclass(frozen=True)
class SpeechFailure:
    """A sentence that could not be spoken (yielded instead of its audio; never raised).

    Attributes:
        text: the sentence (speakable form; "" when the text stream itself failed).
        error: what went wrong, fit for a log line.
        index: position of the sentence in the reply (0-based).
        fatal: True when the stream stops after this marker.
    """

    text: str
    error: str
    index: int
    fatal: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StreamStats:
    """Timings of one :func:`speak_stream` run (seconds from its start; None = did not happen).

    Mutable on purpose: it is filled in while the stream runs, pass one in to read it afterwards.
    """

    first_sentence_s: float | None = None
    first_audio_s: float | None = None
    first_audio_latency_s: float | None = None
    text_done_s: float | None = None
    total_s: float | None = None
    sentences: int = 0
    failures: int = 0
    chars_spoken: int = 0
    audio_s: float = 0.0
    synth_s: float = 0.0
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


async def _aiter(source: AsyncIterable[str] | Iterable[str]) -> AsyncIterator[str]:
    if hasattr(source, "__aiter__"):
        async for chunk in source:  # type: ignore[union-attr]
            yield chunk
    else:
        for chunk in source:  # type: ignore[union-attr]
            yield chunk


async def speak_stream(tts: TTS, text: AsyncIterable[str] | Iterable[str], prosody: Prosody | None = None, *,
                       max_chars: int = MAX_SPOKEN_CHARS, max_sentence_chars: int = MAX_SENTENCE_CHARS,
                       stats: StreamStats | None = None) -> AsyncIterator[SpeechAudio | SpeechFailure]:
    """Speak a streamed reply sentence by sentence (see the module docstring).

    Args:
        tts: the voice (loaded on the first sentence if it is not yet).
        text: the reply's text chunks, async (an LLM stream) or a plain iterable.
        prosody: how to say it (e.g. ``prosody_for(target_vad, tts.profile)``); None = neutral.
        max_chars: spoken-length cap; the stream stops at the sentence boundary before it.
        max_sentence_chars: longer sentences are cut at a clause boundary.
        stats: filled in with timings and counts while streaming.

    Yields:
        :class:`SpeechAudio` per sentence (in order), or :class:`SpeechFailure` markers.
    """
    stats = stats if stats is not None else StreamStats()
    t0 = time.perf_counter()
    sentences: asyncio.Queue[Any] = asyncio.Queue()
    results: asyncio.Queue[Any] = asyncio.Queue(maxsize=AUDIO_LOOKAHEAD)

    async def read() -> None:
        splitter = SentenceSplitter(max_sentence_chars)
        index = 0
        try:
            async for chunk in _aiter(text):
                if not isinstance(chunk, str):
                    chunk = str(chunk) if chunk is not None else ""
                for sentence in splitter.feed(chunk):
                    await sentences.put((index, sentence, time.perf_counter() - t0))
                    index += 1
            for sentence in splitter.flush():
                await sentences.put((index, sentence, time.perf_counter() - t0))
                index += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the LLM stream broke: say so, speak what we had
            for sentence in splitter.flush():
                await sentences.put((index, sentence, time.perf_counter() - t0))
                index += 1
            error = f"text stream failed: {type(exc).__name__}: {exc}"
            await sentences.put(SpeechFailure("", error, index, True))
        finally:
            stats.text_done_s = time.perf_counter() - t0
            sentences.put_nowait(_END)

    async def synthesise() -> None:
        try:
            await synthesise_all()
        except asyncio.CancelledError:
            raise  # the caller stopped listening: nobody waits for an end marker
        except Exception as exc:  # a bug must not hang or crash the caller's turn
            log.exception("speech stream failed")
            error = f"speech stream failed: {type(exc).__name__}: {exc}"
            await results.put(SpeechFailure("", error, -1, True))
        await results.put(_END)

    async def synthesise_all() -> None:
        budget = max_chars
        consecutive = 0
        rest: tuple[int, str, float] | None = None  # the second part of a split first sentence
        while True:
            if rest is not None:
                (index, said, at), rest = rest, None
            else:
                item = await sentences.get()
                if item is _END:
                    break
                if isinstance(item, SpeechFailure):
                    stats.failures += 1
                    await results.put(item)
                    break
                index, raw, at = item
                said = speakable(raw)
                if not said:
                    continue
                if stats.sentences == 0 and stats.failures == 0:
                    # The first audio waits on this synthesis: a long first sentence starts with
                    # its first clause, and the rest is synthesised while that plays.
                    said, tail = first_clause(said)
                    if tail:
                        rest = (index, tail, at)
            if len(said) > budget:
                stats.truncated = True
                if budget == max_chars:  # nothing said yet: say the start of it
                    cut = said[:budget].rsplit(" ", 1)[0] if " " in said[:budget] else said[:budget]
                    said = cut.rstrip(" ,;:") + "."
                else:
                    break
            budget -= len(said) + 1
            if stats.first_sentence_s is None:
                stats.first_sentence_s = at
            try:
                audio = await asyncio.to_thread(tts.synthesize, said, prosody, normalize=False)
            except Exception as exc:  # never into the caller: a marker instead
                consecutive += 1
                stats.failures += 1
                fatal = consecutive >= MAX_CONSECUTIVE_FAILURES
                log.warning("speech stream: sentence %d failed (%s)", index, exc)
                await results.put(SpeechFailure(said, f"{type(exc).__name__}: {exc}", index, fatal))
                if fatal:
                    break
                continue
            consecutive = 0
            ready = time.perf_counter() - t0
            timings = dict(audio.timings)
            timings.update({"sentence_available_s": at, "audio_ready_s": ready, "index": float(index)})
            if stats.first_audio_s is None:
                stats.first_audio_s = ready
                stats.first_audio_latency_s = ready - at
                timings["first_audio_latency_s"] = ready - at
            stats.sentences += 1
            stats.chars_spoken += len(said)
            stats.audio_s += audio.duration_s
            stats.synth_s += float(audio.timings.get("synth_s", 0.0))
            await results.put(SpeechAudio(audio.sample_rate, audio.samples, audio.text, audio.voice,
                                          audio.prosody, timings, audio.truncated))
            if budget <= 0:
                break

    reader = asyncio.create_task(read(), name="speak_stream.read")
    synthesiser = asyncio.create_task(synthesise(), name="speak_stream.synthesise")
    try:
        while True:
            item = await results.get()
            if item is _END:
                break
            yield item
    finally:
        for task in (synthesiser, reader):
            if not task.done():
                task.cancel()
        for task in (synthesiser, reader):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        stats.total_s = time.perf_counter() - t0
