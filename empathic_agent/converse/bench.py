"""``empathic bench voice``: talk mode measured as a person meets it (JSON).

Two clients speak recorded utterances in real time, with pauses, and play the agent's audio as it
arrives:

* ``websocket``: a Python client of the API's ``/v1/converse`` (the real server process's app
  under uvicorn, an API key, PCM16 in 64 ms messages paced by the clock);
* ``browser``: the web UI in real headless Chromium.  Its fake microphone device plays a WAV of
  the utterances with long pauses (``--use-file-for-fake-audio-capture``); talking over a reply
  needs to react to the reply, so those utterances go into the page's microphone path when the
  page hears the agent speak (``window.empathicTalk.inject``).

Utterances (synthesised, so every run has the same material): single sentences; sentences with a
600 ms pause in the middle ("I went to the shop yesterday and … I forgot my wallet at home."),
for false ends of turn; an interruption ("Wait, stop, …") spoken once the agent's reply has at
least 1.5 s left to play.  Figures:

* ``end_to_first_audio_s``: the person's voice ends (the last voiced sample of the utterance
  leaves the client) -> the reply's first audio starts playing at the client (p50 / p95);
* ``barge_in_stop_s``: from the moment the interruption has lasted long enough to count (the
  server's ``interrupted.at_s``, on the stream clock) to playback stopped at the client, and
  ``barge_in_from_onset_s``: from the first voiced sample of the interruption;
* ``false_end_of_turn_rate``: paused utterances answered inside their pause (a turn ended there or
  a reply began before the utterance was over);
* ``missed_interruption_rate``: interruptions that did not stop the reply within 4 s;
* word error rate of the streamed transcripts against the same recordings sent whole to the
  upload path (Piper and espeak-ng voices).

Targets (issue 20, embedded defaults on a 2-core machine): end to first audio p50 <= 1.2 s,
p95 <= 2.0 s; barge-in stop <= 0.3 s; no reply inside a 600 ms pause.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empathic_agent.converse.models import SAMPLE_RATE

__all__ = ["Clip", "make_clips", "bench_websocket", "add_parser", "run", "wer"]

SENTENCES = ("I lost my job today and I feel terrible.",
             "My sister never calls me back anymore.",
             "I can't sleep the night before an exam.",
             "Work has been really stressful this month.",
             "I finally told my friend how I feel.",
             "Everything at home feels heavy lately.")
PAUSED = (("I went to the shop yesterday and", "I forgot my wallet at home."),
          ("When I got to the station I realised that", "my train had already left."),
          ("My brother called me last night because", "he wanted to borrow some money again."),
          ("I keep thinking about the meeting where", "my boss ignored everything I said."))
BARGE_PROMPT = "Tell me what you think I should do about it."
BARGE = "Wait, stop, I need to tell you something else first."
MID_PAUSE_S = 0.6
#: An interruption counts as missed when the reply has not stopped this long after its onset.
MISSED_AFTER_S = 4.0


@dataclass
class Clip:
    """One utterance at 16 kHz: its words, samples, where the voice ends and (for paused ones)
    where the mid-sentence pause is (sample indices)."""

    kind: str  # "turn", "paused", "prompt" or "barge"
    text: str
    voice: str
    samples: np.ndarray
    voice_start: int = 0
    voice_end: int = 0
    pause: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _voiced_bounds(x: np.ndarray) -> tuple[int, int]:
    """First and last sample of 10 ms windows louder than -40 dB of the clip's peak."""
    win = 160
    n = x.size // win
    rms = np.sqrt(np.mean(x[:n * win].reshape(n, win) ** 2, axis=1))
    on = np.nonzero(rms > 0.01 * max(float(np.abs(x).max()), 1e-6))[0]
    if not on.size:
        return 0, x.size
    return int(on[0] * win), int((on[-1] + 1) * win)


def make_clips(voices: tuple[str, ...] = ("piper-joe-medium",)) -> list[Clip]:
    """The bench's utterances, synthesised with each voice (see the module docstring)."""
    from empathic_agent.perceive.audio import _resample
    from empathic_agent.speak import load_tts

    clips: list[Clip] = []
    for name in voices:
        tts = load_tts(name)

        def say(text: str) -> np.ndarray:
            a = tts.synthesize(text)  # noqa: B023 — used at once, inside the loop
            return _resample(np.asarray(a.samples, np.float32), a.sample_rate).astype(np.float32)

        for text in SENTENCES:
            x = say(text)
            clips.append(Clip("turn", text, name, x, *_voiced_bounds(x)))
        for first, second in PAUSED:
            a, b = say(first), say(second)
            a0, a1 = _voiced_bounds(a)
            b0, b1 = _voiced_bounds(b)
            # Exactly MID_PAUSE_S of silence between the two halves' voices.
            x = np.concatenate([a[:a1], np.zeros(int(MID_PAUSE_S * SAMPLE_RATE), np.float32), b[b0:]])
            pause = (a1, a1 + int(MID_PAUSE_S * SAMPLE_RATE))
            clips.append(Clip("paused", f"{first} {second}", name, x, a0, pause[1] + (b1 - b0), pause))
        x = say(BARGE_PROMPT)
        clips.append(Clip("prompt", BARGE_PROMPT, name, x, *_voiced_bounds(x)))
        x = say(BARGE)
        clips.append(Clip("barge", BARGE, name, x, *_voiced_bounds(x)))
    return clips


def _norm(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def wer(refs: list[str], hyps: list[str]) -> float | None:
    """Word error rate over pairs (word-level edit distance / reference words)."""
    edits = words = 0
    for ref, hyp in zip(refs, hyps):
        r, h = _norm(ref), _norm(hyp)
        row = list(range(len(h) + 1))
        for i, wr in enumerate(r, 1):
            prev, row[0] = row[0], i
            for j, wh in enumerate(h, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (wr != wh))
        edits += row[-1]
        words += len(r)
    return round(edits / words, 4) if words else None


def _pcts(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    v = sorted(values)
    return {"n": len(v), "p50": round(statistics.median(v), 3),
            "p95": round(v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))], 3), "max": round(v[-1], 3)}


class _Client:
    """A talk-mode client over the API's WebSocket: a sender paced by the clock (silence when it
    has nothing to say), a receiver that logs events and keeps the playback schedule."""

    CHUNK = 1024  # 64 ms

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.queue: list[np.ndarray] = []
        self.samples = 0
        self.sent: list[tuple[float, int]] = []  # (time, samples sent so far)
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.plays: list[list[float]] = []  # [start, end] per sentence (end cut at a stop)
        self.stops: list[float] = []
        self._header: dict[str, Any] | None = None

    async def send_loop(self) -> None:
        t0 = time.monotonic()
        n = 0
        while True:
            x = np.zeros(self.CHUNK, np.float32)
            if self.queue:
                head = self.queue[0]
                take = head[:self.CHUNK]
                x[:take.size] = take
                self.queue[0] = head[self.CHUNK:]
                if not self.queue[0].size:
                    self.queue.pop(0)
            await self.ws.send((x * 32767).astype("<i2").tobytes())
            self.samples += self.CHUNK
            self.sent.append((time.monotonic(), self.samples))
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * self.CHUNK / SAMPLE_RATE - time.monotonic()))

    async def receive_loop(self) -> None:
        async for message in self.ws:
            now = time.monotonic()
            if isinstance(message, bytes):
                if self._header is not None:
                    start = max(now, self.plays[-1][1] if self.plays else now)
                    self.plays.append([start, start + float(self._header["duration_s"])])
                    self._header = None
                continue
            event = json.loads(message)
            self.events.append((now, event))
            if event["type"] == "audio":
                self._header = event
            elif event["type"] == "interrupted":
                self.stops.append(now)
                for p in self.plays:
                    p[1] = min(p[1], now)

    def time_of_sample(self, sample: int) -> float:
        """When the client sent stream sample ``sample``."""
        for t, n in self.sent:
            if n >= sample:
                return t - (n - sample) / SAMPLE_RATE
        return self.sent[-1][0] if self.sent else time.monotonic()

    def playing_left(self) -> float:
        now = time.monotonic()
        return max([p[1] - now for p in self.plays if p[0] <= now] or [0.0])

    def idle(self) -> bool:
        now = time.monotonic()
        return not self.queue and all(p[1] <= now for p in self.plays)

    def say(self, clip: Clip) -> int:
        """Queue the clip; returns the stream sample where it starts."""
        queued = sum(q.size for q in self.queue)
        self.queue.append(clip.samples.copy())
        return self.samples + queued


def _answered_after_interruption(kinds: list[str]) -> bool:
    if "interrupted" not in kinds:
        return False
    after = kinds[kinds.index("interrupted"):]
    return any(k in ("result", "turn_skipped", "turn_failed") for k in after)


async def _wait(cond: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return False


async def bench_websocket(url: str, key: str, clips: list[Clip], *, session: str = "bench") -> list[dict[str, Any]]:
    """Run the trials over ``url`` (ws://.../v1/converse); one record per clip."""
    import websockets

    records: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers={"X-API-Key": key}, max_size=2 ** 24) as ws:
        await ws.send(json.dumps({"type": "start", "user_id": "bench", "session_id": session, "sample_rate": 16000}))
        assert json.loads(await ws.recv())["type"] == "ready"
        client = _Client(ws)
        tasks = [asyncio.create_task(client.send_loop()), asyncio.create_task(client.receive_loop())]
        try:
            await asyncio.sleep(1.0)
            for clip in clips:
                if clip.kind == "barge":
                    continue
                await _wait(client.idle, 60)
                await asyncio.sleep(1.0)
                n_events = len(client.events)
                start = client.say(clip)
                rec: dict[str, Any] = {"kind": clip.kind, "voice": clip.voice, "text": clip.text, "start": start}
                if clip.kind == "prompt":  # then talk over the reply once it has 1.5 s left to play
                    barge = next(c for c in clips if c.kind == "barge" and c.voice == clip.voice)
                    if await _wait(lambda: client.playing_left() >= 1.5, 60):
                        rec["barge_start"] = client.say(barge)
                        rec["barge"] = barge
                        rec["barge_spoken"] = True
                        # The interruption is a turn of its own: wait for its answer too.
                        await _wait(lambda n=n_events: _answered_after_interruption(
                            [e["type"] for _, e in client.events[n:]]), 60)
                    await _wait(lambda: client.idle() and not client.queue, 60)
                else:
                    await _wait(lambda n=n_events: any(e["type"] in ("result", "turn_skipped", "turn_failed")  # type: ignore[misc]
                                                       for _, e in client.events[n:]), 60)
                rec["events"] = [(t, e) for t, e in client.events[n_events:]]
                records.append({**rec, "clip": clip})
            await _wait(client.idle, 60)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return _measure(records, client)


def _measure(records: list[dict[str, Any]], client: _Client) -> list[dict[str, Any]]:
    out = []
    for rec in records:
        clip: Clip = rec["clip"]
        events = rec["events"]
        row: dict[str, Any] = {"kind": rec["kind"], "voice": rec["voice"], "text": rec["text"]}
        heard = [e["text"] for _, e in events if e["type"] == "transcript" and e.get("final", True)]
        row["transcript"] = heard[0] if heard else ""
        voice_end_t = client.time_of_sample(rec["start"] + clip.voice_end)
        firsts = [t for t, e in events if e["type"] == "audio"]
        if rec["kind"] in ("turn", "paused", "prompt") and firsts:
            # The first sentence plays when it arrives (nothing else is playing between turns).
            row["end_to_first_audio_s"] = round(firsts[0] - voice_end_t, 3)
        if clip.pause is not None:
            p0, p1 = (client.time_of_sample(rec["start"] + i) for i in clip.pause)
            ends = [e for _, e in events if e["type"] == "speech_ended"]
            early = any(e.get("voice_end_s") is not None
                        and rec["start"] / SAMPLE_RATE + clip.pause[0] / SAMPLE_RATE - 0.1
                        <= e["voice_end_s"] <= rec["start"] / SAMPLE_RATE + clip.pause[1] / SAMPLE_RATE
                        for e in ends)
            row["answered_in_pause"] = bool(early or any(p0 <= t < voice_end_t for t in firsts))
            row["pause_s"] = round(p1 - p0, 3)
        if "barge" in rec:
            row["barge_spoken"] = True
            barge: Clip = rec["barge"]
            onset = client.time_of_sample(rec["barge_start"] + barge.voice_start)
            stops = [(t, e) for t, e in events if e["type"] == "interrupted" and t >= onset - 0.05]
            row["interrupted"] = bool(stops and stops[0][0] - onset <= MISSED_AFTER_S)
            if stops:
                t, e = stops[0]
                row["barge_in_from_onset_s"] = round(t - onset, 3)
                row["barge_in_stop_s"] = round(t - client.time_of_sample(int(e["at_s"] * SAMPLE_RATE)), 3)
                row["spoken"] = e.get("spoken", "")
        out.append(row)
    return out


def summarise(rows: list[dict[str, Any]], upload: dict[str, str] | None = None) -> dict[str, Any]:
    """The figures of the module docstring from per-trial rows."""
    paused = [r for r in rows if r["kind"] == "paused"]
    # Interruptions actually spoken (a reply never long enough to talk over is no trial).
    barges = [r for r in rows if r["kind"] == "prompt" and r.get("barge_spoken")]
    heard = [r for r in rows if r["kind"] in ("turn", "paused") and r.get("transcript") is not None]
    out: dict[str, Any] = {
        "end_to_first_audio_s": _pcts([r["end_to_first_audio_s"] for r in rows if "end_to_first_audio_s" in r]),
        "barge_in_stop_s": _pcts([r["barge_in_stop_s"] for r in barges if "barge_in_stop_s" in r]),
        "barge_in_from_onset_s": _pcts([r["barge_in_from_onset_s"] for r in barges if "barge_in_from_onset_s" in r]),
        "false_end_of_turn_rate": (round(sum(r["answered_in_pause"] for r in paused) / len(paused), 4)
                                   if paused else None),
        "paused_utterances": len(paused),
        "missed_interruption_rate": (round(sum(not r.get("interrupted") for r in barges) / len(barges), 4)
                                     if barges else None),
        "interruptions": len(barges),
        "wer_streamed": wer([r["text"] for r in heard], [r["transcript"] for r in heard]),
    }
    if upload is not None:
        out["wer_upload"] = wer([r["text"] for r in heard], [upload.get(r["voice"] + "|" + r["text"], "")
                                                            for r in heard])
    out["targets"] = {"end_to_first_audio_s": {"p50": 1.2, "p95": 2.0}, "barge_in_stop_s": 0.3,
                      "false_end_of_turn_rate": 0.0}
    return out


def upload_transcripts(clips: list[Clip], settings: Any) -> dict[str, str]:
    """The same recordings sent whole through the upload path's speech-to-text."""
    from empathic_agent.perceive.stt import load_stt

    stt = load_stt(settings)
    return {c.voice + "|" + c.text: stt.transcribe((SAMPLE_RATE, c.samples)).text
            for c in clips if c.kind in ("turn", "paused")}


def _serve_api(settings: Any, home: Path) -> tuple[Any, str, str, Any]:
    """The API app under uvicorn on a free loopback port, in a thread: (server, ws url, key, thread)."""
    import threading

    import uvicorn

    from empathic_agent.api.keys import KeyStore
    from empathic_agent.api.server import create_api
    from empathic_agent.ui.process import free_port

    keys = KeyStore(home / "api.sqlite")
    key = keys.create_key("bench")
    app = create_api(settings, keys=keys)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.2)
    return server, f"ws://127.0.0.1:{port}/v1/converse", key, thread


def bench_voice(settings: Any, *, modes: tuple[str, ...] = ("websocket", "browser"),
                voices: tuple[str, ...] = ("piper-joe-medium", "espeak-ng")) -> dict[str, Any]:
    """Both clients (see the module docstring); JSON-able figures per mode."""
    import dataclasses
    import tempfile

    from empathic_agent.machine import machine_info

    clips = make_clips(voices)
    upload = upload_transcripts(clips, settings)
    result: dict[str, Any] = {"clips": len(clips), "voices": list(voices), "mid_pause_s": MID_PAUSE_S}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if "websocket" in modes:
            s = dataclasses.replace(settings, memory_dir=home / "memory", speak_replies=True)
            server, url, key, thread = _serve_api(s, home)
            try:
                rows = asyncio.run(bench_websocket(url, key, clips))
            finally:
                server.should_exit = True
                thread.join(timeout=30)
            result["websocket"] = {**summarise(rows, upload), "trials": rows}
        if "browser" in modes:
            from empathic_agent.converse.bench_browser import bench_browser

            rows = bench_browser(clips, home)
            result["browser"] = {**summarise(rows, upload), "trials": rows}
    result["machine"] = machine_info()
    return result


def add_parser(bench_subparsers: Any, common: argparse.ArgumentParser) -> None:
    from empathic_agent.cli._common import handled_by

    q = bench_subparsers.add_parser("voice", parents=[common],
                                    help="talk mode: end of speech -> first audio, barge-in, false ends of turn (JSON)")
    q.add_argument("--modes", default="websocket,browser", help="websocket, browser or both (default both)")
    q.add_argument("--voices", default="piper-joe-medium,espeak-ng", help="voices that speak the utterances")
    q.add_argument("--out", help="also write the JSON to this file")
    handled_by(q, "empathic_agent.converse.bench:run")


def run(settings: Any, args: argparse.Namespace) -> int:
    from empathic_agent.cli._common import emit

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    unknown = set(modes) - {"websocket", "browser"}
    if unknown or not modes:
        raise SystemExit(f"--modes: websocket and/or browser, not {', '.join(sorted(unknown)) or 'nothing'}")
    voices = tuple(v.strip() for v in args.voices.split(",") if v.strip())
    emit(bench_voice(settings, modes=modes, voices=voices), args.out)
    return 0
