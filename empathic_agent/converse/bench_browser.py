"""The browser half of ``empathic bench voice``: the real app (``app.py``) in real headless
Chromium with a fake microphone device.  Each utterance goes into the page's own microphone path
(``window.empathicTalk.inject``: the samples replace the device's, chunk by chunk, in real time,
through the same ScriptProcessor -> PCM16 -> WebSocket path), once the previous reply has finished
playing — or, for the interruption, once the reply has 1.5 s left to play.  (A fake device playing
a fixed WAV cannot wait for the agent: a reply that runs long would be talked over, and the trial
would measure something else.  The web tests play fixed WAVs through the device itself.)

Timing on the page's clock: the page logs when it sent each chunk (stream samples ->
``performance.now()``), where each injected utterance began in the stream, when each event
arrived, and when each sentence started playing or was stopped
(:mod:`empathic_agent.converse.bench` has the figures).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from empathic_agent.converse.bench import MISSED_AFTER_S, Clip
from empathic_agent.converse.models import SAMPLE_RATE

__all__ = ["bench_browser"]

def _map(sent: list[dict[str, float]], stream_s: float) -> float:
    """performance.now() when the page sent stream second ``stream_s``."""
    target = stream_s * SAMPLE_RATE
    for s in sent:
        if s["samples"] >= target:
            return s["t"] - 1000.0 * (s["samples"] - target) / SAMPLE_RATE
    return sent[-1]["t"] if sent else 0.0


IDLE_JS = """() => {
  const T = window.empathicTalk, now = performance.now();
  const ends = Math.max(0, ...T.plays.filter(p => p.start).map(p => p.start + 1000 * p.duration_s));
  const ev = T.events.map(e => e.type);
  // A turn is open from its speech_ended until its result (or until it is skipped, fails or is
  // cut short by the person resuming).
  const asked = ev.lastIndexOf('speech_ended');
  const closed = Math.max(...['result', 'turn_skipped', 'turn_failed', 'interrupted'].map(t => ev.lastIndexOf(t)));
  // Every utterance said so far has been heard out (its turn ended), no speech is being heard
  // and no turn is open.
  const heard = ev.filter(t => t === 'speech_ended').length >= T.injections.length;
  const speaking = ev.lastIndexOf('speech_started') > asked;
  return T.ready && !T.pending() && heard && !speaking && (asked < 0 || closed > asked) && now > ends + 1000;
}"""
BARGE_JS = """(x) => {
  const T = window.empathicTalk;
  const watch = setInterval(() => {
    const now = performance.now();
    const played = T.plays.filter(p => p.start);
    const ends = Math.max(0, ...played.map(p => p.start + 1000 * p.duration_s));
    if (played.some(p => p.start <= now) && ends - now >= 1500) {
      clearInterval(watch); T.bargeIndex = T.injections.length; T.inject(x);
    }
  }, 5);
}"""
#: Replies too short to talk over get a follow-up question (at most this many).
FOLLOW_UPS = 3


def _until(page: Any, predicate: str, timeout_s: float = 120.0) -> None:
    """Poll ``predicate`` (a JS function) until it returns true."""
    import time

    end = time.monotonic() + timeout_s
    while not page.evaluate(predicate):
        if time.monotonic() > end:
            raise TimeoutError(f"the page did not reach {predicate[:60]!r} in {timeout_s:.0f} s")
        page.wait_for_timeout(50)


def _floats(x: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in x]


def bench_browser(clips: list[Clip], home: Path) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    from empathic_agent.speak.tts import wav_bytes
    from empathic_agent.ui.process import CHROMIUM, CHROMIUM_ARGS, serve_app

    voice = clips[0].voice
    spoken = [c for c in clips if c.voice == voice and c.kind in ("turn", "paused", "prompt")]
    barge = next(c for c in clips if c.voice == voice and c.kind == "barge")
    wav = home / "silence.wav"
    wav.write_bytes(wav_bytes(np.zeros(30 * SAMPLE_RATE, np.float32), SAMPLE_RATE))
    args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"]
    with serve_app(home, home / "app.log") as app, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["microphone"])
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(app["url"] + "/")
        page.locator("#msg textarea").wait_for(state="visible")
        page.locator("#talk-start").click()
        page.wait_for_function("() => window.empathicTalk.ready")
        page.wait_for_timeout(1000)
        for clip in spoken:
            _until(page, IDLE_JS)
            page.evaluate("(x) => window.empathicTalk.inject(x)", _floats(clip.samples))
            if clip.kind == "prompt":
                page.evaluate(BARGE_JS, _floats(barge.samples))
            _until(page, "() => !window.empathicTalk.pending()")
        for _ in range(FOLLOW_UPS):  # a reply too short to talk over: ask again
            _until(page, IDLE_JS)
            if page.evaluate("() => window.empathicTalk.bargeIndex !== undefined"):
                break
            page.evaluate("(x) => window.empathicTalk.inject(x)", _floats(spoken[-1].samples))
            _until(page, "() => !window.empathicTalk.pending()")
        _until(page, IDLE_JS)
        log = page.evaluate("() => ({sent: window.empathicTalk.sent, events: window.empathicTalk.events, "
                            "plays: window.empathicTalk.plays, injections: window.empathicTalk.injections, "
                            "barge: window.empathicTalk.bargeIndex})")
        page.locator("#talk-stop").click()
        (home / "browser-log.json").write_text(json.dumps(log), encoding="utf-8")
        browser.close()
    return _rows(spoken, barge, log)


def _rows(spoken: list[Clip], barge: Clip, log: dict[str, Any]) -> list[dict[str, Any]]:
    events, sent, starts = log["events"], log["sent"], log["injections"]
    plays = [p for p in log["plays"] if "start" in p]
    stops = [p["stopped"] for p in log["plays"] if "stopped" in p]
    rows = []
    k = 0
    for clip in spoken:
        row: dict[str, Any] = {"kind": clip.kind, "voice": clip.voice, "text": clip.text}
        if k >= len(starts):
            rows.append(row)
            continue
        begin = starts[k]
        k += 1
        t0, s0 = begin["t"], begin["samples"] / SAMPLE_RATE
        # The turn's events: until the next utterance begins (for the prompt: the interruption).
        until = starts[k]["t"] if k < len(starts) else float("inf")
        turn = [e for e in events if t0 <= e["t"] < until]
        voice_end_t = _map(sent, s0 + clip.voice_end / SAMPLE_RATE)
        heard = [e["text"] for e in turn if e["type"] == "transcript" and e.get("final", True)]
        row["transcript"] = heard[0] if heard else ""
        later = [p["start"] for p in plays if p["start"] >= t0]
        if later:
            row["end_to_first_audio_s"] = round((later[0] - voice_end_t) / 1000, 3)
        if clip.pause is not None:
            p0, p1 = s0 + clip.pause[0] / SAMPLE_RATE, s0 + clip.pause[1] / SAMPLE_RATE
            ends = [e for e in turn if e["type"] == "speech_ended"]
            row["answered_in_pause"] = bool(any(p0 - 0.1 <= (e.get("voice_end_s") or -1) <= p1 for e in ends)
                                            or any(_map(sent, p0) <= t < voice_end_t for t in later))
        if clip.kind == "prompt" and log.get("barge") is not None and log["barge"] < len(starts):
            b = starts[log["barge"]]
            row["barge_spoken"] = True
            onset = _map(sent, b["samples"] / SAMPLE_RATE + barge.voice_start / SAMPLE_RATE)
            cut = [e for e in events if e["type"] == "interrupted" and e["t"] >= onset - 50]
            row["interrupted"] = bool(cut and cut[0]["t"] - onset <= 1000 * MISSED_AFTER_S)
            if cut:
                e = cut[0]
                stopped = next((t for t in stops if t >= e["t"] - 1), e["t"])
                row["barge_in_from_onset_s"] = round((stopped - onset) / 1000, 3)
                row["barge_in_stop_s"] = round((stopped - _map(sent, e["at_s"])) / 1000, 3)
                row["spoken"] = e.get("spoken", "")
        rows.append(row)
    return rows
