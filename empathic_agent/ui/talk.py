"""The web UI's talk mode: the browser side (a small script the page loads) and the ``/talk``
WebSocket it speaks to.

The page's "Start talking" button asks the server (a Gradio event, behind the page's login) for a
one-time ticket naming the person, the conversation and their settings; the script opens
``/talk``, sends ``{"type": "start", "ticket", "sample_rate": 16000}``, streams the microphone as
16 kHz PCM16 (the browser resamples: ``AudioContext({sampleRate: 16000})``, with its echo
cancellation on) and plays each spoken sentence as soon as it arrives, back to back.  On
``interrupted`` it stops playback at once.  After each turn it clicks a hidden button, so the
chat and the perception panel refresh as after a typed turn.  The protocol after ``start`` is
:mod:`empathic_agent.converse.websocket`, the same as the API's.

For measurements (``empathic bench voice``) the script keeps a log on ``window.empathicTalk``:
``sent`` (performance.now() and the stream's samples at each chunk sent), ``events`` (each event
with its arrival time) and ``plays`` (when each sentence starts playing and when playback stopped).
``inject(samples)`` makes the next 16 kHz samples the microphone sends these (tests and the
benchmark talk over a reply that has started, whatever the machine's speed).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from empathic_agent.converse.session import check_sample_rate
from empathic_agent.converse.websocket import refuse, serve_events
from empathic_agent.errors import InputError

__all__ = ["TALK_HEAD", "TALK_PANEL", "add_talk_socket", "turn_summary"]

log = logging.getLogger(__name__)

#: The panel the script writes into (status line and captions).
TALK_PANEL = ('<div class="talk-status">Talk mode is off. Press <b>Start talking</b>, then just speak; '
              'I answer when you pause, and stop when you talk over me.</div>'
              '<div class="talk-captions"></div>')

TALK_HEAD = """<script>
window.empathicTalk = (() => {
  const T = {ws: null, ready: false, sent: [], events: [], plays: [], samples: 0, state: 'off'};
  let mic = null, inCtx = null, proc = null, outCtx = null, sources = [], playEnd = 0, header = null, live = null,
      lastAgent = null, heardSoFar = null;
  const panel = () => document.querySelector('#talk-panel');
  function status(text) { const el = panel() && panel().querySelector('.talk-status'); if (el) el.textContent = text; }
  function caption(cls, text) {
    const box = panel() && panel().querySelector('.talk-captions');
    if (!box) return null;
    const p = document.createElement('p'); p.className = cls; p.textContent = text;
    box.appendChild(p); box.scrollTop = box.scrollHeight; return p;
  }
  function stopPlayback() {
    for (const s of sources) { try { s.stop(); } catch (e) {} }
    sources = []; playEnd = 0;
  }
  function play(h, bytes) {
    const pcm = new Int16Array(bytes);
    if (!pcm.length) return;
    const buf = outCtx.createBuffer(1, pcm.length, h.sample_rate);
    const ch = buf.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = outCtx.createBufferSource();
    src.buffer = buf; src.connect(outCtx.destination);
    const at = Math.max(outCtx.currentTime + 0.01, playEnd);
    src.start(at); playEnd = at + buf.duration; sources.push(src);
    T.plays.push({index: h.index, text: h.text, start: performance.now() + 1000 * (at - outCtx.currentTime),
                  duration_s: buf.duration});
    status('Speaking... (talk over me to interrupt)');
    src.onended = () => { sources = sources.filter(x => x !== src); if (!sources.length && T.ws) status('Listening...'); };
  }
  function onEvent(e) {
    T.events.push({t: performance.now(), ...e});
    if (e.type === 'ready') { T.ready = true; T.state = 'listening'; status('Listening... speak when you are ready.'); }
    else if (e.type === 'speech_started') { status('Hearing you...'); }
    else if (e.type === 'speech_ended') { status('Thinking...'); }
    else if (e.type === 'transcript') {
      // A partial caption (words so far, heard in a pause) is replaced by the next one and the final.
      const text = 'You: ' + e.text + (e.final ? '' : ' ...');
      if (heardSoFar) heardSoFar.textContent = text; else heardSoFar = caption('talk-you', text);
      if (e.final) { heardSoFar = null; live = null; }
    }
    else if (e.type === 'text') {
      if (!live) { live = caption('talk-agent', 'Agent: '); lastAgent = live; }
      if (live) live.textContent += e.text;
    }
    else if (e.type === 'audio') { header = e; }
    else if (e.type === 'interrupted') {
      stopPlayback(); T.plays.push({stopped: performance.now()});
      if (lastAgent && e.spoken !== undefined) lastAgent.textContent = 'Agent: ' + (e.spoken || '') + ' [interrupted]';
      lastAgent = null;
      live = null; status('Listening...');
    }
    else if (e.type === 'result') {
      live = null;
      const refresh = document.querySelector('#talk-refresh');
      if (refresh) refresh.click();
    }
    else if (e.type === 'turn_skipped') { heardSoFar = null; status('I did not catch any words. Listening...'); }
    else if (e.type === 'turn_failed') { heardSoFar = null; status('That turn failed: ' + e.message); }
    else if (e.type === 'error') { status(e.error.message); }
  }
  async function start(ticket) {
    if (!ticket) return;
    await stop();
    T.sent = []; T.events = []; T.plays = []; T.samples = 0; T.ready = false;
    outCtx = new AudioContext();
    inCtx = new AudioContext({sampleRate: 16000});
    try {
      mic = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1, echoCancellation: true,
                                                                noiseSuppression: true, autoGainControl: true}});
    } catch (err) { status('The microphone is not available: ' + err.message); return; }
    mic.getAudioTracks().forEach(track => track.addEventListener('ended', () => {
      status('The microphone was disconnected; your last words are answered.');
      if (T.ws && T.ws.readyState === 1) T.ws.send(JSON.stringify({type: 'end'}));
    }));
    const source = inCtx.createMediaStreamSource(mic);
    proc = inCtx.createScriptProcessor(1024, 1, 1);
    source.connect(proc); proc.connect(inCtx.destination);
    const url = new URL('talk', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url.href);
    ws.binaryType = 'arraybuffer'; T.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({type: 'start', ticket: ticket, sample_rate: 16000}));
    ws.onmessage = (m) => {
      if (typeof m.data === 'string') onEvent(JSON.parse(m.data));
      else if (header) { play(header, m.data); header = null; }
    };
    ws.onclose = () => { if (T.ws === ws) { T.ws = null; T.state = 'off'; status('Talk mode is off.'); release(); } };
    proc.onaudioprocess = (ev) => {
      if (!T.ready || ws.readyState !== 1) return;
      let x = ev.inputBuffer.getChannelData(0);
      if (injected.length) {  // test and benchmark hook: these samples are what the microphone hears
        if (!injecting) { injecting = true; T.injections.push({t: performance.now(), samples: T.samples}); }
        const part = injected.splice(0, x.length);
        if (!injected.length) injecting = false;
        x = Float32Array.from({length: x.length}, (_, i) => i < part.length ? part[i] : 0);
      }
      const pcm = new Int16Array(x.length);
      for (let i = 0; i < x.length; i++) pcm[i] = Math.max(-1, Math.min(1, x[i])) * 32767;
      ws.send(pcm.buffer); T.samples += x.length;
      T.sent.push({t: performance.now(), samples: T.samples});
      if (T.sent.length > 20000) T.sent.splice(0, 10000);
    };
    status('Connecting...');
  }
  function release() {
    if (proc) { proc.disconnect(); proc.onaudioprocess = null; proc = null; }
    if (mic) { mic.getTracks().forEach(t => t.stop()); mic = null; }
    if (inCtx) { inCtx.close(); inCtx = null; }
  }
  async function stop() {
    stopPlayback();
    const ws = T.ws;
    T.ws = null; T.ready = false; T.state = 'off';
    release();
    if (ws && ws.readyState === 1) { ws.send(JSON.stringify({type: 'end'})); ws.close(); }
    status('Talk mode is off.');
  }
  // Tests and `empathic bench voice` speak through the microphone's own path, in real time, when
  // they need to react to the agent (talk over a reply that has started): 16 kHz samples.
  const injected = [];
  let injecting = false;
  T.injections = [];  // {t, samples}: when (and at which stream sample) each injected utterance began
  T.inject = (samples) => { for (const v of samples) injected.push(v); };
  T.pending = () => injected.length;
  T.start = start; T.stop = stop;
  return T;
})();
</script>"""


def turn_summary(result: Any) -> dict[str, Any]:
    """The ``result`` event of the page's socket: the words (the panels refresh from the
    server's copy of the whole result)."""
    return {"turn_id": result.turn_id, "user_text": result.user_text, "reply": result.reply,
            "crisis": result.crisis}


def add_talk_socket(app: Any, controller: Any, *, talk_models: tuple[Any, Any] | None = None) -> None:
    """``/talk`` on the UI's app: a ticket from the page, then the shared protocol."""

    @app.websocket("/talk")
    async def talk(ws: WebSocket) -> None:
        await ws.accept()
        try:
            start = json.loads(await ws.receive_text())
        except (json.JSONDecodeError, WebSocketDisconnect, KeyError, TypeError):
            await refuse(ws, 4400, "bad_request", "the first message must be a JSON start message")
            return
        who = controller.redeem_ticket(start.get("ticket", "")) if isinstance(start, dict) else None
        if who is None:
            await refuse(ws, 4401, "unauthorized", "this talk ticket is not valid (press Start talking again)")
            return
        options, user_id, session_id = who
        try:
            rate = check_sample_rate(start.get("sample_rate", 16000))
        except InputError as exc:
            await refuse(ws, 4400, "bad_request", str(exc))
            return
        agent = await controller.agent(options)

        def keep(result: Any) -> None:
            controller.talk_results[(user_id, session_id)] = result

        await serve_events(ws, agent, user_id, session_id, sample_rate=rate, speak=True, result_json=turn_summary,
                           talk_models=talk_models, on_result=keep)
