"""The Gradio page: chat (text, microphone, camera), a live perception panel, memories and data,
settings.  Thin by design: every action is a method of :class:`~empathic_agent.ui.controller.UIController`.

Offline and private by default: binds to 127.0.0.1, analytics off, fonts served by the app itself
(Gradio's LocalFont themes), no server-side rendering process, no share links.  Bound to another
interface, the page asks for a login (``--auth user:password`` or ``EMPATHIC_UI_AUTH``) and each
login is its own user: a person never sees someone else's memories.
"""


import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

from empathic_agent.errors import EmpathicError
from empathic_agent.settings import Settings
from empathic_agent.ui.controller import (
    AUDIO,
    BACKEND_EMBEDDED,
    BACKEND_OPENAI,
    IMAGE,
    UIController,
    UIOptions,
    UploadError,
    category_scores,
    memory_rows,
    perception_markdown,
    trajectory_rows,
)
from empathic_agent.ui.options import add_ui_arguments
from empathic_agent.ui.talk import TALK_HEAD, TALK_PANEL, add_talk_socket

__all__ = ["build_ui", "create_app", "launch", "main", "LOOPBACK_HOSTS"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: How a spoken turn and a turn with a camera frame are marked in the conversation (plain text:
#: emoji need a font the machine may not have).
VOICE_MARK = "(voice) "
CAMERA_MARK = " (camera)"
#: Recalled memories: score = the recall strategy's total (meaning similarity · mood congruence).
RECALLED_HEADERS = ["#", "memory", "feeling", "score (meaning · mood)"]
STORED_HEADERS = ["id", "memory", "kind", "feeling", "stored"]
#: Where the trajectory plots are before a conversation has a turn (an empty plot is a bare box).
PLOTS_EMPTY = ("*How you seem to feel, turn by turn (valence: unpleasant to pleasant; arousal: calm to "
               "activated), is drawn here after your first message.*")
CSS = """
#crisis-banner { border: 2px solid #b91c1c; background: #fef2f2; border-radius: 8px; padding: 8px 14px; }
#crisis-banner.risk-low { border-color: #b45309; background: #fffbeb; }
#perception { font-size: 0.92em; }
/* The chat's label and its toolbar (copy all, clear) float over the top of the message list: start
   the scrolling list below them, so they never cover a message. */
#chat .bubble-wrap { margin-top: 2.3rem; height: calc(100% - 2.3rem); padding-top: 4px; }
/* The voice and camera labels share their top row with the components' own buttons (clear, full
   screen) in the top-right corner: keep the label's text out of that corner. */
#mic label[data-testid="block-label"], #cam label[data-testid="block-label"] {
  max-width: calc(100% - 6rem);
}
/* Talk mode: the ticket field and the refresh button are the script's, not the person's. */
.talk-hidden { display: none !important; }
#talk-panel .talk-status { font-weight: 600; margin-bottom: 4px; }
#talk-panel .talk-captions { max-height: 9rem; overflow-y: auto; font-size: 0.92em; }
#talk-panel .talk-captions p { margin: 2px 0; }
"""


def _session_name() -> str:
    return time.strftime("%Y-%m-%d-%H%M") + "-" + uuid.uuid4().hex[:4]


def _plot_updates(trajectory: list[dict[str, Any]]) -> tuple[Any, Any, Any]:
    """Updates of the valence plot, the arousal plot and their empty-state note.

    Turns are categories ("1", "2", ...) kept in turn order: on a numeric axis Vega adds half-turn
    ticks, which a whole-number format then shows twice ("1 2 2 3 3").  With no turn yet the plots
    are hidden behind the note: a plot without data draws a bare axis tick and an empty legend."""
    import gradio as gr
    import pandas as pd

    rows = trajectory_rows(trajectory)
    if not rows:
        hidden = gr.update(visible=False, value=None)
        return hidden, hidden, gr.update(visible=True)
    df = pd.DataFrame(rows, columns=["turn", "dimension", "series", "value"])
    order = [str(t) for t in sorted(df.turn.unique())]
    df["turn"] = df.turn.astype(str)

    def plot(dimension: str) -> Any:
        return gr.update(visible=True, value=df[df.dimension == dimension], sort=order)

    return plot("valence"), plot("arousal"), gr.update(visible=False)


def _file_as_received(component: Any) -> Any:
    """``component`` (a ``gr.Image`` or ``gr.Audio``), now handing its events the uploaded file's
    path as it is (or a webcam's data URL).  Gradio's own preprocessing opens an image with PIL,
    and a file that is not one fails the whole event: every output turns red and the toast shows
    the exception and the server's temporary path.  The controller decodes the file instead
    (:meth:`UIController.read_upload`) and a bad one gets a message in plain words.

    Set on the instance, not in a subclass: Gradio writes a ``.pyi`` stub next to the module of
    every component class it sees defined."""

    def preprocess(payload: Any) -> str | None:
        if payload is None:
            return None
        url = getattr(payload, "url", None) or ""
        return url if url.startswith("data:") else payload.path

    component.preprocess = preprocess
    return component


def _count(records: list[Any]) -> str:
    if not records:
        return "No memories."
    return "1 memory (click a row to pick it)." if len(records) == 1 else f"{len(records)} memories (click a row to pick one)."


#: The banner's heading per route (the safety stage's level decides the route).
BANNER_HEADINGS = {
    "emergency": "## Please call {emergency} now — this is an emergency",
    "escalate": "### You don't have to face this alone — help is available now",
    "protocol": "### You don't have to face this alone — help is available now",
    "helper": "### Helping someone who may be in danger",
    "check_in": "#### If things feel heavier, support is here any time",
}


def _banner(result: Any) -> Any:
    """The safety banner, by the turn's risk level: an emergency line first when imminent, the
    crisis resources on a crisis route, a quieter note with the resources on a check-in; hidden
    when there is no risk.  The chat carries the protocol's reply."""
    import gradio as gr

    safety = getattr(result, "safety", None) or {}
    route = safety.get("route") or ("protocol" if safety.get("crisis") else "continue")
    if route not in BANNER_HEADINGS:
        return gr.update(visible=False, value="")
    emergency = safety.get("emergency") or "your local emergency number"
    level = safety.get("level") or "moderate"
    lines = [BANNER_HEADINGS[route].format(emergency=emergency),
             f"<small>Risk level read from this conversation: **{level}**</small>"]
    if route in ("protocol", "escalate", "helper") and safety.get("emergency"):
        lines.append(f"**In immediate danger: call {emergency}.**")
    for r in safety.get("resources") or ():
        lines.append(f"- **{r.get('name', '')}**: {r.get('contact', '')}")
    return gr.update(visible=True, value="\n".join(lines), elem_classes=[f"risk-{level}"])


def build_ui(controller: UIController, *, auth: bool = False, default_user: str = "me") -> Any:
    """The page as a ``gr.Blocks`` (not launched)."""
    import gradio as gr

    settings = controller.settings
    voices, personas = controller.voices(), controller.personas()
    # Spoken replies are a person's conversation: written to a private folder that goes with the
    # page (or the process), and Gradio's copies of served files are deleted too (hourly when over
    # an hour old, and all of them when the server stops).
    reply_dir = Path(tempfile.mkdtemp(prefix="empathic-replies-"))

    def user_of(user: str, request: gr.Request | None) -> str:
        # Logged in: the login is the user, whatever the (hidden) field says.
        if auth and request is not None and getattr(request, "username", None):
            return str(request.username)
        return (user or "").strip() or default_user

    def options_of(persona: str, voice: str, backend: str, url: str, model: str) -> UIOptions:
        return UIOptions(persona=persona or settings.persona, voice=voice or settings.tts_voice,
                         backend=backend or BACKEND_EMBEDDED, openai_url=url or "", openai_model=model or "")

    with gr.Blocks(title="Empathic Agent", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        weakref.finalize(demo, shutil.rmtree, reply_dir, ignore_errors=True)
        gr.Markdown("## Empathic Agent\n<small>Everything runs on this machine: your words, voice and camera "
                    "frames stay here unless you choose a remote language model in Settings.</small>")
        banner = gr.Markdown(visible=False, elem_id="crisis-banner")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row():
                    with gr.Column(scale=3):
                        # No "share" button: it posts to Hugging Face Spaces; nothing here leaves the machine.
                        chatbot = gr.Chatbot(label="Conversation", elem_id="chat", height=440,
                                             buttons=["copy", "copy_all"],
                                             placeholder="Tell me how you are — type, or record your voice.")
                        with gr.Row():
                            msg = gr.Textbox(show_label=False, placeholder="How are you feeling today?", scale=6,
                                             elem_id="msg", max_lines=6, autofocus=True)
                            send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                        with gr.Row():
                            mic = _file_as_received(gr.Audio(sources=["microphone", "upload"], type="filepath",
                                                             elem_id="mic", label="Voice message"))
                            cam = _file_as_received(gr.Image(sources=["webcam", "upload"], type="filepath",
                                                             elem_id="cam", label="Camera (opt-in)"))
                        gr.Markdown("<small>A recording or a camera frame goes with your next message; "
                                    "camera frames are read, never stored.</small>", elem_id="media-hint")
                        with gr.Row():
                            speak = gr.Checkbox(value=True, label="Speak replies aloud", elem_id="speak")
                            keep_cam = gr.Checkbox(value=False, label="Keep the camera frame for later messages",
                                                   elem_id="keep-cam")
                        with gr.Row():
                            talk_start = gr.Button("Start talking", elem_id="talk-start", scale=1)
                            talk_stop = gr.Button("Stop talking", elem_id="talk-stop", scale=1)
                        gr.HTML(TALK_PANEL, elem_id="talk-panel")
                        talk_ticket = gr.Textbox(elem_id="talk-ticket", elem_classes=["talk-hidden"], show_label=False)
                        talk_refresh = gr.Button("refresh", elem_id="talk-refresh", elem_classes=["talk-hidden"])
                        turn_status = gr.Markdown(elem_id="turn-status")
                        reply_audio = gr.Audio(label="Spoken reply", autoplay=True, interactive=False,
                                               elem_id="reply-audio", type="filepath")
                    with gr.Column(scale=2):
                        gr.Markdown("#### What I perceived")
                        perception = gr.Markdown("*Nothing perceived yet — say something.*", elem_id="perception")
                        categories = gr.Label(label="Emotion (fused)", num_top_classes=4, elem_id="categories")
                        plots_note = gr.Markdown(PLOTS_EMPTY, elem_id="plots-empty")
                        valence_plot = gr.LinePlot(x="turn", y="value", color="series", y_lim=[-1, 1], visible=False,
                                                   title="Valence over turns (lines from turn 2)", elem_id="valence-plot", height=200)
                        arousal_plot = gr.LinePlot(x="turn", y="value", color="series", y_lim=[-1, 1], visible=False,
                                                   title="Arousal over turns (lines from turn 2)", elem_id="arousal-plot", height=200)
                        # Wide enough for each header's longest word ("feeling" broke as "feelin/g").
                        recalled = gr.Dataframe(headers=RECALLED_HEADERS, label="Memories recalled this turn",
                                                interactive=False, elem_id="recalled", wrap=True,
                                                column_widths=["7%", "45%", "20%", "28%"])
            with gr.Tab("Memories & data", id="memory"):
                gr.Markdown("What the agent remembers about you. Delete any of it, or take all of it with you.")
                mem_table = gr.Dataframe(headers=STORED_HEADERS, interactive=False, elem_id="memory-table", wrap=True)
                with gr.Row():
                    refresh = gr.Button("Refresh", elem_id="mem-refresh")
                    mem_id = gr.Textbox(label="Memory id", placeholder="click a row of the table", elem_id="mem-id")
                    delete_one = gr.Button("Delete this memory", elem_id="mem-delete")
                with gr.Row():
                    export_btn = gr.Button("Export all my data (JSON)", elem_id="export")
                    export_file = gr.File(label="Your data", elem_id="export-file")
                with gr.Row():
                    confirm = gr.Checkbox(label="I understand: delete all my memories and conversations",
                                          elem_id="confirm-delete-all")
                    delete_all = gr.Button("Delete all my data", variant="stop", elem_id="delete-all")
                data_status = gr.Markdown(elem_id="data-status")
            with gr.Tab("Settings", id="settings"):
                with gr.Row():
                    user = gr.Textbox(label="User", value=default_user, interactive=not auth, visible=not auth,
                                      elem_id="user")
                    # A callable value is drawn per page load: a name drawn once here was every
                    # page's until its load event ran, so a message sent at once from two tabs
                    # went into one conversation (seen in a browser check on 2026-12-06).
                    session = gr.Dropdown(label="Conversation", choices=[], value=_session_name,
                                          allow_custom_value=True, elem_id="session")
                with gr.Row():
                    new_session = gr.Button("New conversation", elem_id="new-session")
                    resume = gr.Button("Resume selected conversation", elem_id="resume")
                with gr.Row():
                    persona = gr.Dropdown(personas, value=settings.persona, label="Persona", elem_id="persona")
                    voice = gr.Dropdown(voices, value=settings.tts_voice, label="Voice", elem_id="voice")
                backend = gr.Radio([BACKEND_EMBEDDED, BACKEND_OPENAI], value=controller.default_options.backend, label="Language model",
                                   info="embedded: runs here on the CPU. openai-compatible: a server you run "
                                        "(e.g. vLLM); your messages go to that address.", elem_id="backend")
                served = controller.default_options.backend == BACKEND_OPENAI
                with gr.Row():  # only for the server backend (see on_backend)
                    url = gr.Textbox(label="Server URL", value=settings.openai_base_url, elem_id="llm-url",
                                     visible=served)
                    model = gr.Textbox(label="Model (blank: the server's first)", value=settings.openai_model,
                                       elem_id="llm-model", visible=served)
                settings_status = gr.Markdown(elem_id="settings-status")

        # -- chat ---------------------------------------------------------------------------------
        async def on_send(text, audio_path, image_path, speak_on, keep, history, user_v, session_v, persona_v,
                          voice_v, backend_v, url_v, model_v, request: gr.Request):
            history = list(history or [])
            text = text or ""
            if not text.strip() and not audio_path:
                gr.Warning("Type a message or record one first.")
                yield gr.skip()
                return
            try:  # before the turn: a bad file is cleared with one message, the typed words stay
                audio = await controller.read_upload(AUDIO, audio_path)
                image = await controller.read_upload(IMAGE, image_path)
            except UploadError as exc:
                gr.Warning(str(exc))
                yield {mic if exc.kind == AUDIO else cam: None}
                return
            uid = user_of(user_v, request)
            sid = (session_v or "").strip() or _session_name()
            shown = text.strip() if text.strip() else VOICE_MARK + "…"
            if image is not None:
                shown += CAMERA_MARK
            history += [{"role": "user", "content": shown}, {"role": "assistant", "content": "…"}]
            yield {chatbot: history, msg: "", turn_status: "*Listening…*"}
            result, transcript = None, ""
            t0 = time.perf_counter()
            first_s = None
            try:
                opts = options_of(persona_v, voice_v, backend_v, url_v, model_v)
                async for update in controller.turn(opts, uid, sid, text=text, audio=audio, image=image,
                                                    speak=bool(speak_on)):
                    if update.result is None and update.audio is None:
                        first_s = first_s if first_s is not None else time.perf_counter() - t0
                        history[-1] = {"role": "assistant", "content": update.reply}
                        yield {chatbot: history}
                    elif update.result is not None:
                        result, transcript = update.result, update.transcript
            except EmpathicError as exc:
                history = history[:-2]
                gr.Warning(str(exc))
                yield {chatbot: history, msg: text, turn_status: f"⚠️ {exc}"}
                return
            history[-1] = {"role": "assistant", "content": result.reply}
            if transcript:
                history[-2] = {"role": "user", "content": VOICE_MARK + transcript
                               + (CAMERA_MARK if image is not None else "")}
            audio_out = None
            spoken = result.audio
            if spoken is not None:
                audio_out = str(spoken.write_wav(reply_dir / f"{result.turn_id}.wav"))
            val, aro, note = _plot_updates(await controller.trajectory(uid, sid))
            yield {chatbot: history, mic: None, cam: image_path if keep else None, reply_audio: audio_out,
                   perception: perception_markdown(result), categories: category_scores(result.emotion),
                   valence_plot: val, arousal_plot: aro, plots_note: note,
                   recalled: memory_rows(list(result.memories)), banner: _banner(result),
                   session: gr.update(choices=await controller.sessions(uid), value=sid),
                   turn_status: f"Turn {sum(1 for m in history if m['role'] == 'user')} answered by "
                                f"{result.generation.get('backend', '?')} ({result.generation.get('model', '?')}) "
                                f"in {time.perf_counter() - t0:.1f} s (first words after {first_s or 0:.2f} s)."}

        send_inputs = [msg, mic, cam, speak, keep_cam, chatbot, user, session, persona, voice, backend, url, model]
        send_outputs = [chatbot, msg, mic, cam, reply_audio, perception, categories, valence_plot, arousal_plot,
                        plots_note, recalled, banner, session, turn_status]
        send.click(on_send, send_inputs, send_outputs, concurrency_limit=2)
        msg.submit(on_send, send_inputs, send_outputs, concurrency_limit=2)
        mic.stop_recording(on_send, send_inputs, send_outputs, concurrency_limit=2)

        # -- talk mode (the page's script streams the microphone over /talk: ui/talk.py) ----------
        async def on_talk_start(user_v, session_v, persona_v, voice_v, backend_v, url_v, model_v,
                                request: gr.Request):
            uid = user_of(user_v, request)
            sid = (session_v or "").strip() or _session_name()
            try:
                opts = options_of(persona_v, voice_v, backend_v, url_v, model_v)
                await controller.agent(opts)  # unknown persona, voice or server: said now
                return controller.talk_ticket(opts, uid, sid), sid
            except EmpathicError as exc:
                gr.Warning(str(exc))
                return "", ""

        async def on_talk_refresh(user_v, talk_sid, request: gr.Request):
            """After a spoken turn: the conversation and the panels, as after a typed turn (of
            the conversation the talk started in, whatever the selector shows meanwhile)."""
            uid = user_of(user_v, request)
            sid = (talk_sid or "").strip()
            if not sid:
                return gr.skip()
            history = await controller.history(uid, sid)
            result = controller.talk_results.get((uid, sid))
            if result is None:
                return {chatbot: history}
            val, aro, note = _plot_updates(await controller.trajectory(uid, sid))
            return {chatbot: history, perception: perception_markdown(result),
                    categories: category_scores(result.emotion), valence_plot: val, arousal_plot: aro,
                    plots_note: note, recalled: memory_rows(list(result.memories)), banner: _banner(result),
                    turn_status: "Spoken turn answered."}

        talk_session = gr.State("")
        talk_start.click(on_talk_start, [user, session, persona, voice, backend, url, model],
                         [talk_ticket, talk_session]).then(
            None, [talk_ticket], None, js="(ticket) => { window.empathicTalk.start(ticket); }")
        talk_stop.click(None, None, None, js="() => { window.empathicTalk.stop(); }")
        talk_refresh.click(on_talk_refresh, [user, talk_session],
                           [chatbot, perception, categories, valence_plot, arousal_plot, plots_note, recalled,
                            banner, turn_status], show_progress="hidden")

        def on_upload(kind: str, component: Any):
            """Check a file as soon as it arrives: a bad one is cleared with one message, so the
            next message goes out without it (no red components, nothing to undo)."""

            async def check(source):
                try:
                    await controller.read_upload(kind, source)
                except UploadError as exc:
                    gr.Warning(str(exc))
                    return None
                return gr.skip()

            component.upload(check, [component], [component], show_progress="hidden")

        on_upload(AUDIO, mic)
        on_upload(IMAGE, cam)

        # -- conversations ------------------------------------------------------------------------
        async def on_load(user_v, request: gr.Request):
            # Every page load starts a new conversation; earlier ones are a click away (Resume).
            uid = user_of(user_v, request)
            return gr.update(choices=await controller.sessions(uid), value=_session_name())

        async def on_new(user_v, request: gr.Request):
            uid = user_of(user_v, request)
            # Nothing of the last conversation stays on screen: its risk banner, recalled
            # memories, status line and spoken reply belonged to it.
            return (gr.update(choices=await controller.sessions(uid), value=_session_name()), [],
                    "*Nothing perceived yet — say something.*", None, *_plot_updates([]),
                    "Started a new conversation.", gr.update(visible=False, value=""), [], "", None)

        async def on_resume(user_v, session_v, request: gr.Request):
            uid = user_of(user_v, request)
            sid = (session_v or "").strip()
            if not sid:
                return (gr.skip(),) * 7 + ("Choose a conversation first.",) + (gr.skip(),) * 4
            history = await controller.history(uid, sid)
            # The banner is left as it is: the next turn reads the resumed conversation's risk.
            return (gr.skip(), history, f"*Resumed **{sid}** ({len(history)} messages).*", None,
                    *_plot_updates(await controller.trajectory(uid, sid)), f"Resumed {sid}.",
                    gr.skip(), [], "", None)

        demo.load(on_load, [user], [session])
        new_outputs = [session, chatbot, perception, categories, valence_plot, arousal_plot, plots_note,
                       settings_status, banner, recalled, turn_status, reply_audio]
        new_session.click(on_new, [user], new_outputs)
        resume.click(on_resume, [user, session], new_outputs)

        async def on_settings(persona_v, voice_v, backend_v, url_v, model_v):
            try:
                await controller.agent(options_of(persona_v, voice_v, backend_v, url_v, model_v))
            except EmpathicError as exc:
                return f"⚠️ {exc}"
            where = "on this machine" if backend_v == BACKEND_EMBEDDED else f"at {url_v} (your messages go there)"
            return f"Using persona **{persona_v}**, voice **{voice_v}**, language model {where}."

        for comp in (persona, voice, backend):
            comp.change(on_settings, [persona, voice, backend, url, model], [settings_status])
        url.blur(on_settings, [persona, voice, backend, url, model], [settings_status])

        def on_backend(backend_v):
            # The server's address and model mean nothing for the embedded model: shown only for a server.
            shown = gr.update(visible=backend_v == BACKEND_OPENAI)
            return shown, shown

        backend.change(on_backend, [backend], [url, model], show_progress="hidden")

        # -- memories and data --------------------------------------------------------------------
        async def on_refresh(user_v, request: gr.Request):
            uid = user_of(user_v, request)
            records = await controller.memories(uid)
            return memory_rows(records), _count(records)

        async def on_delete_one(user_v, mid, request: gr.Request):
            uid = user_of(user_v, request)
            try:
                ok = await controller.delete_memory(uid, mid or "")
            except EmpathicError as exc:
                ok, note = False, str(exc)
            else:
                note = "Deleted." if ok else f"No memory {mid!r} of yours."
            records = await controller.memories(uid)
            return memory_rows(records), "" if ok else gr.skip(), note

        async def on_export(user_v, request: gr.Request):
            uid = user_of(user_v, request)
            path = await controller.export(uid)
            return str(path), f"Exported to {path.name}."

        async def on_delete_all(user_v, sure, request: gr.Request):
            uid = user_of(user_v, request)
            if not sure:
                return gr.skip(), gr.skip(), "Tick the box to confirm first.", gr.skip()
            counts = await controller.delete_all(uid)
            return ([], False, f"Deleted {counts.get('memories', 0)} memories and {counts.get('conversations', 0)} "
                    "conversations.", [])

        def on_pick(evt: gr.SelectData):
            row = getattr(evt, "row_value", None) or []
            return str(row[0]) if row else gr.skip()

        mem_table.select(on_pick, None, [mem_id])
        refresh.click(on_refresh, [user], [mem_table, data_status])
        delete_one.click(on_delete_one, [user, mem_id], [mem_table, mem_id, data_status])
        export_btn.click(on_export, [user], [export_file, data_status])
        delete_all.click(on_delete_all, [user, confirm], [mem_table, confirm, data_status, chatbot])
        demo.load(on_refresh, [user], [mem_table, data_status])
    return demo


def _parse_auth(spec: str | None) -> list[tuple[str, str]] | None:
    if not spec:
        return None
    pairs = []
    for item in spec.split(","):
        name, sep, password = item.partition(":")
        if not sep or not name.strip() or not password:
            raise SystemExit("--auth expects user:password (comma-separated for several people)")
        pairs.append((name.strip(), password))
    return pairs


def create_app(settings: Settings, *, auth: list[tuple[str, str]] | None = None, warm_up: bool = True,
               controller: UIController | None = None, talk_models: tuple[Any, Any] | None = None) -> Any:
    """The web app (FastAPI with the page mounted at ``/``).  Models load in the app's startup, on
    the loop that serves the page, so the server accepts connections only once it can answer at
    full speed; ``/healthz`` says so."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from contextlib import asynccontextmanager

    import gradio as gr
    from fastapi import FastAPI

    controller = controller or UIController(settings)
    state = {"ready": False, "load_s": None}

    @asynccontextmanager
    async def lifespan(_app: Any):
        t0 = time.perf_counter()
        # ASCII only: stderr may be a file or a terminal without UTF-8.
        print("loading models... (the first start prepares them; later starts take seconds)", file=sys.stderr,
              flush=True)
        await controller.start(warm_up=warm_up)
        state.update(ready=True, load_s=round(time.perf_counter() - t0, 2))
        print(f"models ready in {state['load_s']} s", file=sys.stderr, flush=True)
        try:
            yield
        finally:
            await controller.aclose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return state

    # Talk mode's socket, before the page's mount (which takes every other path).
    add_talk_socket(app, controller, talk_models=talk_models)
    demo = build_ui(controller, auth=bool(auth))
    demo.queue(default_concurrency_limit=2)
    theme = gr.themes.Soft(primary_hue="teal", neutral_hue="slate")
    return gr.mount_gradio_app(app, demo, path="", auth=auth, ssr_mode=False, show_error=True, max_file_size="25mb",
                               footer_links=[], enable_monitoring=False, mcp_server=False, theme=theme, css=CSS,
                               head=TALK_HEAD)


def launch(settings: Settings, *, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None,
           warm_up: bool = True) -> None:
    """Load the models, build the page and serve it (blocks until interrupted)."""
    import uvicorn

    from empathic_agent.private import private_umask

    private_umask()  # memories, history and voice baselines written by this process are private
    logins = _parse_auth(auth or os.environ.get("EMPATHIC_UI_AUTH"))
    if host not in LOOPBACK_HOSTS and not logins:
        print(f"warning: serving on {host} without a login: anyone who can reach this address can chat "
              "and read the memories of the users they name. Use --auth user:password.", file=sys.stderr)
    app = create_app(settings, auth=logins, warm_up=warm_up)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}/"

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            # The models load in the app's startup, before the port is bound: the address is
            # printed only once it accepts connections (printed earlier, it refused them for the
            # whole load).
            await super().startup(sockets=sockets)
            if self.started:
                print(f"Empathic Agent web UI: {address}  (Ctrl+C to stop)", file=sys.stderr, flush=True)

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="app.py", description="Start the Empathic Agent web UI.")
    add_ui_arguments(p)
    a = p.parse_args(argv)
    launch(Settings.from_env(), host=a.host, port=a.port, auth=a.auth, warm_up=not a.no_warm_up)
    return 0
