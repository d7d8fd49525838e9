"""End-to-end: the web UI in a real headless Chromium against the real app (embedded defaults).

Each test is what a person does: open the page, type and see the reply stream in, speak through
the microphone component and see the transcript, send a camera frame, manage their memories, and
change settings.  The page must never reach outside this machine.  Timing figures are written to
``artifacts/e2e/figures.json`` (measured, not asserted: thresholds belong to benchmarks).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIGURES: dict[str, float] = {}

# JS: texts of the chat's bot / user messages (Gradio renders both a bubble and a panel element
# per message; the bubble has the role class).
BOT_TEXTS = "() => [...document.querySelectorAll('#chat .message.bot')].map(e => e.innerText.trim())"
USER_TEXTS = "() => [...document.querySelectorAll('#chat .message.user')].map(e => e.innerText.trim())"
# JS: record every distinct text the last bot message shows while it streams.
WATCH_STREAM = """() => {
  window.__seen = [];
  const obs = new MutationObserver(() => {
    const m = [...document.querySelectorAll('#chat .message.bot')];
    if (!m.length) return;
    const t = m[m.length - 1].innerText.trim();
    if (t && window.__seen[window.__seen.length - 1] !== t) window.__seen.push(t);
  });
  obs.observe(document.querySelector('#chat'), {subtree: true, childList: true, characterData: true});
}"""


def _open(page, app_server) -> float:
    t0 = time.perf_counter()
    page.goto(app_server["url"] + "/")
    page.locator("#msg textarea").wait_for(state="visible")
    page.locator("#send").wait_for(state="visible")
    return time.perf_counter() - t0


def _turn_done(page, n_bot: int, *, diagnose: bool = False) -> None:
    """Wait until the page shows that turn ``n`` of this conversation is finished (with
    ``diagnose``, a timeout reports what the chat, the status line and any warning toast said)."""
    try:
        page.locator("#turn-status", has_text=f"Turn {n_bot} answered").wait_for()
    except Exception as exc:
        if not diagnose:
            raise
        seen = page.evaluate("() => ({user: (%s)(), bot: (%s)(), status: document.querySelector('#turn-status')"
                             "?.innerText, toasts: [...document.querySelectorAll('.toast-body, .toast-wrap')]"
                             ".map(e => e.innerText)})" % (USER_TEXTS, BOT_TEXTS))
        raise AssertionError(f"turn {n_bot} did not finish; the page shows {seen}") from exc


def _upload_done(page, elem: str) -> None:
    """Wait until a media component has finished uploading its file to the server (Gradio shows
    "Uploading…" first; an event sent before the upload ends would carry no file)."""
    page.wait_for_function(
        f"() => {{ const e = document.querySelector('{elem}'); return e && !/Uploading/.test(e.innerText)"
        f" && !!e.querySelector('audio, img, .waveform-container, [data-testid=\\'waveform-x\\']'); }}",
        polling=50)


#: Texts a bot bubble shows before the reply's first words: our placeholder, and Gradio's own
#: transient pending bubble ("Loading content").
NOT_YET = "['', '…', 'Loading content']"


def _send_text(page, text: str) -> float:
    """Type and send; returns seconds until the reply's first streamed text appears."""
    n_before = len(page.evaluate(BOT_TEXTS))
    page.locator("#msg textarea").fill(text)
    t0 = time.perf_counter()
    page.locator("#send").click()
    page.wait_for_function(
        f"() => {{ const m = [...document.querySelectorAll('#chat .message.bot')];"
        f" return m.length > {n_before} && !{NOT_YET}.includes(m[m.length-1].innerText.trim()); }}", polling=20)
    return time.perf_counter() - t0


def _write_figures(artifacts: Path) -> None:
    (artifacts / "figures.json").write_text(json.dumps(FIGURES, indent=1) + "\n")


def test_page_loads_offline_and_is_interactive(page, app_server, artifacts):
    seconds = _open(page, app_server)
    FIGURES["app_ready_s"] = round(app_server["ready_s"], 2)
    FIGURES["page_interactive_s"] = round(seconds, 3)
    _write_figures(artifacts)
    assert page.title() == "Empathic Agent"
    for tab in ("Chat", "Memories & data", "Settings"):
        assert page.get_by_role("tab", name=tab).is_visible()
    page.wait_for_timeout(1000)  # late requests (fonts, plots) would show up here
    assert page.watch.external == [], f"the page reached outside this machine: {page.watch.external}"


def test_text_message_streams_a_reply_and_shows_perception(page, app_server, artifacts):
    _open(page, app_server)
    page.evaluate(WATCH_STREAM)
    first = _send_text(page, "I had a really rough day at work and I can't stop thinking about it.")
    FIGURES["first_text_s"] = round(first, 3)
    _write_figures(artifacts)
    _turn_done(page, 1)
    reply = page.evaluate(BOT_TEXTS)[-1]
    seen = page.evaluate("() => window.__seen")
    assert len(reply.split()) >= 3, reply
    # Streamed: the page showed a placeholder at once and then the reply growing.  The reply
    # arrives sentence by sentence (the reply guard checks whole sentences before they are shown),
    # so a reply of several sentences shows partial texts, each the start of the reply; a
    # one-sentence reply shows the placeholder, then the sentence.
    from empathic_agent.speak.text import split_sentences

    assert "…" in seen and seen.index("…") < seen.index(reply), seen
    partial = [t for t in seen if t != reply and t not in ("…", "Loading content")]
    words = " ".join(reply.split())
    assert all(words.startswith(" ".join(t.rstrip("…").split())) for t in partial), (partial, reply)
    if len(split_sentences(reply)) >= 2:
        assert partial, seen
    panel = page.locator("#perception").inner_text()
    assert "Feeling:" in panel and "Fused:" in panel and "text:" in panel
    assert re.search(r"Plan: \w", panel)
    # The category distribution and both trajectory plots are drawn.
    assert page.locator("#categories").inner_text().strip() != ""
    page.locator("#valence-plot canvas, #valence-plot svg").first.wait_for()
    # A second turn: the plots now have a line over two turns; the voice reply is there to play.
    _send_text(page, "My manager criticised me in front of everyone.")
    _turn_done(page, 2)
    page.locator("#reply-audio audio, #reply-audio [data-testid='waveform-x']").first.wait_for(state="attached")
    assert page.watch.external == []


def test_voice_through_the_microphone_component_shows_the_transcript(page, app_server, artifacts, tmp_path):
    from empathic_agent.speak import Prosody, load_tts

    sentence = "I could not sleep last night because I was worried about my exam."
    # Near-zero sampling noise: the same waveform every run (a rare noise draw can change a word).
    tts = load_tts("piper-joe-medium")
    wav = tts.synthesize(sentence, Prosody(variation=1e-3)).write_wav(tmp_path / "turn.wav")
    _open(page, app_server)
    mic = page.locator("#mic")
    mic.get_by_label("Upload file").click()
    mic.locator("input[type=file]").set_input_files(str(wav))
    _upload_done(page, "#mic")
    page.locator("#send").click()
    _turn_done(page, 1, diagnose=True)
    said = [t for t in page.evaluate(USER_TEXTS) if t.startswith("(voice)")]
    assert said, page.evaluate(USER_TEXTS)
    words = said[-1].lower()
    assert all(w in words for w in ("sleep", "worried", "exam")), said[-1]
    panel = page.locator("#perception").inner_text()
    assert "Heard:" in panel and "speech:" in panel, panel
    assert page.watch.external == []


def test_camera_frame_goes_with_the_turn(page, app_server, artifacts):
    _open(page, app_server)
    cam = page.locator("#cam")
    cam.get_by_label("Upload file").click()
    cam.locator("input[type=file]").set_input_files(str(FIXTURES / "images" / "astronaut.jpg"))
    _upload_done(page, "#cam")
    _send_text(page, "I'm fine, really.")
    _turn_done(page, 1)
    panel = page.locator("#perception").inner_text()
    assert "Camera: 1 frame(s), 1 with a face" in panel, panel
    assert "face:" in panel, panel
    assert page.evaluate(USER_TEXTS)[-1].endswith("(camera)")
    assert page.watch.external == []


def test_memory_view_lists_exports_and_deletes(page, app_server, artifacts):
    _open(page, app_server)
    _send_text(page, "My sister Anna is getting married in June and I am nervous about my speech.")
    _turn_done(page, 1)
    page.get_by_role("tab", name="Memories & data").click()
    page.locator("#mem-refresh").click()
    table = page.locator("#memory-table")
    page.wait_for_function("() => document.querySelector('#memory-table').innerText.includes('Anna')")
    rows_before = int(re.search(r"(\d+) memor", page.locator("#data-status").inner_text()).group(1))
    assert rows_before >= 1
    page.screenshot(path=str(artifacts / "memory-view.png"), full_page=True)

    # Export: a JSON download with this user's memories and conversations.
    with page.expect_download() as dl:
        page.locator("#export").click()
        page.locator("#export-file a").first.click()
    data = json.loads(Path(dl.value.path()).read_text())
    assert data["user_id"] == "me" and data["memories"]["memories"] and data["conversations"]

    # Delete one memory: clicking its row picks its id.
    first_id = data["memories"]["memories"][0]["id"]
    table.get_by_text(first_id, exact=True).filter(visible=True).first.click()
    page.wait_for_function(f"() => document.querySelector('#mem-id textarea, #mem-id input').value === '{first_id}'")
    page.locator("#mem-delete").click()
    page.locator("#data-status", has_text="Deleted.").wait_for()
    assert first_id not in table.inner_text()

    # Delete all: refused without the confirmation, done with it.
    page.locator("#delete-all").click()
    page.locator("#data-status", has_text="confirm").wait_for()
    page.locator("#confirm-delete-all input").check()
    page.locator("#delete-all").click()
    page.locator("#data-status", has_text="Deleted").wait_for()
    page.locator("#mem-refresh").click()
    page.locator("#data-status", has_text="No memories").wait_for()


def test_settings_switch_persona_and_start_a_new_conversation(page, app_server, artifacts):
    _open(page, app_server)
    page.get_by_role("tab", name="Settings").click()
    page.locator("#persona input").first.click()
    page.get_by_role("option", name="alex").click()
    page.locator("#settings-status", has_text="persona **alex**").or_(
        page.locator("#settings-status", has_text="persona alex")).first.wait_for()
    first_session = page.locator("#session input").first.input_value()
    page.get_by_role("tab", name="Chat").click()
    _send_text(page, "Hi, it's me again.")
    _turn_done(page, 1)
    page.get_by_role("tab", name="Settings").click()
    page.locator("#new-session").click()
    page.locator("#settings-status", has_text="new conversation").wait_for()
    assert page.locator("#session input").first.input_value() != first_session
    assert page.evaluate(USER_TEXTS) == []
    # Resume the first conversation: its messages come back.
    page.locator("#session input").first.fill(first_session)
    page.locator("#session input").first.press("Enter")
    page.locator("#resume").click()
    page.locator("#settings-status", has_text=f"Resumed {first_session}").wait_for()
    assert page.evaluate(USER_TEXTS) == ["Hi, it's me again."]
    # A bad server URL for the served backend is refused with a clear message, not a crash.
    page.get_by_role("tab", name="Settings").click()
    # Backend first, then the URL: leaving the URL field (blur) applies it. (Checking the radio
    # right after typing could send the field's previous value under load: a CI flake.)
    page.get_by_label("openai-compatible").check()
    url_field = page.locator("#llm-url input, #llm-url textarea").first
    url_field.fill("not-a-url")
    url_field.press("Tab")
    page.locator("#settings-status", has_text="must start with http").wait_for()
    assert page.watch.failed == []


def test_chat_through_a_real_openai_compatible_server(page, app_server, artifacts, tmp_path):
    """The served-LLM path from the page: a real OpenAI-compatible server process (``transformers
    serve`` with the same weights, standing in for vLLM) chosen in the settings."""
    from empathic_agent.generate.local_server import LocalOpenAIServer
    from empathic_agent.models import resolve_model
    from empathic_agent.settings import Settings

    env = Settings.from_env({})
    model_dir = resolve_model("llm", env.llm_model, env.cache_dir).location
    with open(tmp_path / "server.log", "w") as log, LocalOpenAIServer(model_dir, log=log) as server:
        _open(page, app_server)
        page.get_by_role("tab", name="Settings").click()
        page.get_by_label("openai-compatible").check()
        page.locator("#llm-model input, #llm-model textarea").first.fill(server.model_id)
        url_field = page.locator("#llm-url input, #llm-url textarea").first
        url_field.fill(server.base_url)
        url_field.press("Tab")  # leaving the field applies it
        page.locator("#settings-status", has_text=server.base_url).wait_for()
        page.get_by_role("tab", name="Chat").click()
        _send_text(page, "I finally finished my thesis today!")
        _turn_done(page, 1)
        assert len(page.evaluate(BOT_TEXTS)[-1].split()) >= 3
        assert "answered by openai" in page.locator("#turn-status").inner_text()
        assert "generate:" not in page.locator("#perception").inner_text()  # not a fallback reply
        # The page says where the words went, and nothing else left the machine.
        assert page.watch.external == []


def test_with_logins_each_person_sees_only_their_own_memories(browser, artifacts, tmp_path):
    """Served with ``--auth``: a login page; the login is the user (the user field is gone), and
    one person never sees another's memories."""
    from tests.web.conftest import start_app

    with start_app(tmp_path, artifacts / "app-auth.log", "--auth", "ann:pw-ann,bob:pw-bob", "--no-warm-up") as app:
        for who, password in (("ann", "pw-ann"), ("bob", "pw-bob")):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.goto(app["url"] + "/")
            page.get_by_label("username").fill(who)
            page.get_by_label("password").fill(password)
            page.get_by_role("button", name="Login").click()
            page.locator("#msg textarea").wait_for()
            if who == "ann":
                _send_text(page, "My dog Biscuit ran away this morning.")
                _turn_done(page, 1)
            page.get_by_role("tab", name="Settings").click()
            assert not page.locator("#user").is_visible()
            page.get_by_role("tab", name="Memories & data").click()
            page.locator("#mem-refresh").click()
            status = page.locator("#data-status")
            if who == "ann":
                page.wait_for_function("() => document.querySelector('#memory-table').innerText.includes('Biscuit')")
            else:
                status.filter(has_text="No memories").wait_for()
                assert "Biscuit" not in page.locator("#memory-table").inner_text()
            page.screenshot(path=str(artifacts / f"auth-{who}.png"), full_page=True)
            context.close()
        # A wrong password does not get in.
        context = browser.new_context()
        page = context.new_page()
        page.goto(app["url"] + "/")
        page.get_by_label("username").fill("ann")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        page.get_by_text("Incorrect", exact=False).first.wait_for(timeout=30_000)
        assert not page.locator("#msg textarea").is_visible()
        context.close()


def test_recording_with_the_microphone_sends_the_turn(browser, app_server, artifacts, tmp_path):
    """A real recording: Chromium's fake capture device plays a synthesised sentence into the
    microphone; stopping the recording sends the turn and the transcript appears."""
    from empathic_agent.speak import load_tts
    from empathic_agent.ui.process import CHROMIUM, CHROMIUM_ARGS

    wav = load_tts("piper-joe-medium").synthesize("Please call my sister tomorrow morning.").write_wav(tmp_path / "mic.wav")
    args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-audio-capture={wav}"]
    # A second browser from the same Playwright instance (the fake device is a launch flag); a
    # second sync_playwright() in one thread is refused.
    with contextlib.closing(browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=args)) as mic_browser:
        context = mic_browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["microphone"])
        page = context.new_page()
        page.set_default_timeout(120_000)
        _open(page, app_server)
        mic = page.locator("#mic")
        mic.locator("button.record-button").click()
        page.wait_for_timeout(4500)  # the fake device loops the file; ~3 s of speech
        mic.locator("button.stop-button").first.click()
        page.wait_for_function(f"() => ({USER_TEXTS})().some(t => t.startsWith('(voice)') && /sister/i.test(t))",
                               timeout=180_000)
        _turn_done(page, 1)
        said = [t for t in page.evaluate(USER_TEXTS) if t.startswith("(voice)")][-1]
        assert "call" in said.lower() and "tomorrow" in said.lower(), said
        page.screenshot(path=str(artifacts / "microphone-recording.png"), full_page=True)


def test_a_crisis_shows_the_banner_with_resources(page, app_server, artifacts):
    _open(page, app_server)
    assert not page.locator("#crisis-banner").is_visible()
    _send_text(page, "I can't do this anymore. I want to kill myself.")
    _turn_done(page, 1)
    banner = page.locator("#crisis-banner")
    banner.wait_for(state="visible")
    text = banner.inner_text()
    assert "988" in text and "911" in text, text
    reply = page.evaluate(BOT_TEXTS)[-1]
    assert "988" in reply and "are you safe right now" in reply.lower()
    assert "answered by safety-protocol" in page.locator("#turn-status").inner_text()
    assert "Risk level read from this conversation" in text
    # The next turn stays careful: a vetted lead-in and check-in (the default: the embedded model
    # is not trusted with a careful register), and the banner turns into the quieter check-in note
    # (the risk decays over the following calm turns).
    _send_text(page, "Thank you. I'm calling them now.")
    _turn_done(page, 2)
    page.wait_for_function("() => /support is here any time/.test(document.querySelector('#crisis-banner')?.innerText || '')",
                           timeout=60_000)
    assert "low" in banner.inner_text() and "In immediate danger" not in banner.inner_text()
    assert "are you safe" in page.evaluate(BOT_TEXTS)[-1].lower()
    assert "answered by careful-register" in page.locator("#turn-status").inner_text()
    page.screenshot(path=str(artifacts / "check-in-banner.png"), full_page=True)


# JS: the toasts on screen, each with its kind (the class: warning, error, ...) and text.
TOASTS = ("() => [...document.querySelectorAll('[data-testid=toast-body]')]"
          ".map(e => ({kind: e.className, text: e.innerText}))")
# JS (arg: a component's selector): whether the text of its label runs under one of its buttons.
LABEL_UNDER_BUTTON = """(sel) => {
  const c = document.querySelector(sel), label = c.querySelector('label[data-testid=block-label]');
  const range = document.createRange(); range.selectNodeContents(label);
  const text = [...range.getClientRects()].filter(r => r.width > 0);
  const buttons = [...c.querySelectorAll('button')].filter(b => b.offsetParent && !label.contains(b))
    .map(b => b.getBoundingClientRect()).filter(r => r.top < label.getBoundingClientRect().bottom);
  return text.some(t => buttons.some(b => b.left < t.right && b.right > t.left && b.top < t.bottom && b.bottom > t.top));
}"""
# JS (arg: a table's selector): header words broken across two lines ("feelin/g").
BROKEN_HEADER_WORDS = """(sel) => {
  const broken = [];
  for (const th of document.querySelectorAll(sel + ' th')) {
    const walk = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walk.nextNode(); node; node = walk.nextNode()) {
      for (const m of node.textContent.matchAll(/\\S+/g)) {
        const r = document.createRange(); r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
        const lines = new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.top)));
        if (lines.size > 1) broken.push(m[0]);
      }
    }
  }
  return broken;
}"""
# JS: where the chat's toolbar (its label and buttons) ends, where its scrolling list starts and
# where its first message is when the list is scrolled to the top (computed from the scroll offset:
# the chat scrolls itself to the newest message whenever it updates).
CHAT_GEOMETRY = """() => {
  const list = document.querySelector('#chat .bubble-wrap'), box = list.getBoundingClientRect();
  const first = document.querySelector('#chat .message-row').getBoundingClientRect();
  return {toolbar_bottom: Math.max(...[...document.querySelectorAll(
            '#chat .icon-button-wrapper.top-panel, #chat label[data-testid=block-label]')]
            .map(e => e.getBoundingClientRect().bottom)),
          list_top: box.top, first_message: first.top + list.scrollTop};
}"""
# JS (arg: a plot's selector): the x axis' tick labels.
X_TICKS = """(sel) => [...document.querySelectorAll(sel + " svg [aria-roledescription=axis]")]
  .filter(a => /^X-axis/.test(a.getAttribute('aria-label') || ''))
  .flatMap(a => [...a.querySelectorAll('.role-axis-label text')].map(t => t.textContent))"""


def _bad_files(tmp_path: Path) -> dict[str, list[Path]]:
    """Files people upload by mistake, per component: a text file renamed as a photo, a photo cut
    short, a photo with more pixels than can be decoded safely; the same for a recording (its
    header cut short), and an empty file."""
    from PIL import Image

    def write(name: str, data: bytes | str) -> Path:
        path = tmp_path / name
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
        return path

    photo = (FIXTURES / "images" / "astronaut.jpg").read_bytes()
    Image.new("1", (9000, 9000)).save(tmp_path / "huge.png")  # 81 megapixels in 10 kB
    return {"#cam": [write("note.jpg", "a text file renamed to look like a photo\n" * 5),
                     write("cut.jpg", photo[: len(photo) // 3]), tmp_path / "huge.png"],
            "#mic": [write("note.wav", "a text file renamed to look like a recording\n" * 5),
                     write("cut.wav", b"RIFF\x24\x7d\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"),
                     write("empty.wav", b"")]}


def test_bad_uploads_get_one_plain_message_and_the_next_message_just_works(page, app_server, artifacts, tmp_path):
    """A bad photo or recording is cleared at once with ONE message in plain words (no server
    path, no exception, no component in an error state); the next message needs no extra click."""
    _open(page, app_server)
    for elem, paths in _bad_files(tmp_path).items():
        for path in paths:
            component = page.locator(elem)
            component.get_by_label("Upload file").click()
            component.locator("input[type=file]").set_input_files(str(path))
            page.locator("[data-testid=toast-body]").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1000)  # a second message, or an error state, would show up here
            page.screenshot(path=str(artifacts / f"bad-upload-{path.name}.png"), full_page=True)
            toasts = page.evaluate(TOASTS)
            assert len(toasts) == 1 and "warning" in toasts[0]["kind"], (path.name, toasts)
            message = toasts[0]["text"].split("\n")[-1]
            assert re.match(r"(That|The) (photo|recording|image) ", message), (path.name, message)
            assert "/" not in message and "Error" not in message and path.name not in message, (path.name, message)
            assert page.get_by_text("Error", exact=True).filter(visible=True).count() == 0, path.name
            # The bad file is gone from the component: nothing to undo before the next message.
            page.wait_for_function(f"() => !document.querySelector('{elem} img, {elem} audio, "
                                   f"{elem} [data-testid=\\'waveform-x\\']')")
            page.locator("[data-testid=toast-body] .toast-close").click()
            page.locator("[data-testid=toast-body]").wait_for(state="detached")
    _send_text(page, "Just words this time: how do I get through a long week?")
    _turn_done(page, 1, diagnose=True)
    assert page.evaluate(USER_TEXTS) == ["Just words this time: how do I get through a long week?"]
    assert page.evaluate(TOASTS) == []


def test_layout_before_during_and_after_a_conversation(page, app_server, artifacts):
    """What the probe of the page found, checked where a person sees it: labels clear of their
    buttons, whole header words, plots with titles and whole turns (or a note before there are
    any), and a chat whose toolbar never covers a message."""
    _open(page, app_server)
    # Before the first turn: a note where the plots go, not two empty boxes.
    assert page.locator("#plots-empty").is_visible()
    assert not page.locator("#valence-plot").is_visible() and not page.locator("#arousal-plot").is_visible()
    # Gradio renders the media row after the chat; measure it once it is there (a CI run once
    # evaluated before #mic existed).
    page.locator("#mic label[data-testid=block-label]").wait_for()
    page.locator("#cam label[data-testid=block-label]").wait_for()
    assert not page.evaluate(LABEL_UNDER_BUTTON, "#mic")
    cam = page.locator("#cam")
    cam.get_by_label("Upload file").click()
    cam.locator("input[type=file]").set_input_files(str(FIXTURES / "images" / "astronaut.jpg"))
    _upload_done(page, "#cam")
    assert not page.evaluate(LABEL_UNDER_BUTTON, "#cam")
    page.screenshot(path=str(artifacts / "layout-before-the-first-turn.png"), full_page=True)
    assert page.evaluate(BROKEN_HEADER_WORDS, "#recalled") == []

    for n, text in enumerate(("I had a long and difficult day at work, and my manager criticised my report "
                              "in front of the whole team.", "I keep replaying it in my head.",
                              "At least my friend called me tonight."), 1):
        _send_text(page, text)
        _turn_done(page, n)
    for plot, title in (("#valence-plot", "Valence over turns"), ("#arousal-plot", "Arousal over turns")):
        page.locator(f"{plot} svg").first.wait_for()
        assert title in page.locator(plot).text_content()
        page.wait_for_function(f"() => ({X_TICKS})('{plot}').length === 3")
        assert page.evaluate(X_TICKS, plot) == ["1", "2", "3"]  # whole turns, each once
    assert not page.locator("#plots-empty").is_visible()
    # The chat's toolbar sits above the messages: the first one (list scrolled to the top) starts
    # below it, and the scrolling list is clipped below it (a scrolled message never passes under it).
    chat = page.evaluate(CHAT_GEOMETRY)
    assert chat["first_message"] >= chat["toolbar_bottom"] and chat["list_top"] >= chat["toolbar_bottom"], chat
    page.screenshot(path=str(artifacts / "layout-after-three-turns.png"), full_page=True)
    assert page.evaluate(BROKEN_HEADER_WORDS, "#recalled") == []

    # A new conversation: back to the note, not a plot with a lone tick and an empty legend.
    page.get_by_role("tab", name="Settings").click()
    page.locator("#new-session").click()
    page.locator("#settings-status", has_text="new conversation").wait_for()
    page.get_by_role("tab", name="Chat").click()
    page.locator("#plots-empty").wait_for(state="visible")
    assert not page.locator("#valence-plot").is_visible() and not page.locator("#arousal-plot").is_visible()
    # Nothing of the last conversation stays: no banner, no recalled memories, no status, no audio.
    page.wait_for_function("() => document.querySelectorAll('#recalled tbody tr td').length <= 1"
                           " && !(document.querySelector('#turn-status')?.innerText || '').trim()")
    assert not page.locator("#crisis-banner").is_visible()
    assert page.locator("#recalled tbody").inner_text().strip() == ""
    page.screenshot(path=str(artifacts / "layout-new-conversation.png"), full_page=True)
    page.get_by_role("tab", name="Memories & data").click()
    page.locator("#mem-refresh").click()
    page.wait_for_function("() => document.querySelector('#memory-table').innerText.includes('manager')")
    assert page.evaluate(BROKEN_HEADER_WORDS, "#memory-table") == []


def test_server_fields_show_only_for_the_server_backend(page, app_server, artifacts):
    _open(page, app_server)
    page.get_by_role("tab", name="Settings").click()
    assert page.get_by_label("embedded").is_checked()
    assert not page.locator("#llm-url").is_visible() and not page.locator("#llm-model").is_visible()
    page.get_by_label("openai-compatible").check()
    page.locator("#llm-url").wait_for(state="visible")
    assert page.locator("#llm-model").is_visible()
    page.screenshot(path=str(artifacts / "settings-server-backend.png"), full_page=True)
    page.get_by_label("embedded").check()
    page.locator("#llm-url").wait_for(state="hidden")
    assert not page.locator("#llm-model").is_visible()


def test_the_address_is_printed_once_the_port_accepts_connections(artifacts, tmp_path):
    """``app.py`` says it is loading the models first, and prints its address only once the port
    accepts connections (printed before the load, the address refused them for ~20 s)."""
    import socket

    from empathic_agent.ui.process import run_app

    log_path = artifacts / "app-startup.log"
    with run_app(tmp_path, log_path, "--no-warm-up") as (proc, url):
        address = url + "/"
        deadline = time.monotonic() + 600
        while address not in log_path.read_text():
            assert proc.poll() is None, f"app.py exited with {proc.returncode}: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"no address printed: {log_path.read_text()}"
            time.sleep(0.05)
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10):  # refused before the fix
            pass
        log = log_path.read_text()
        assert "loading models" in log and log.index("loading models") < log.index(address), log


# -- talk mode: the microphone streams, the agent answers at pauses, talking over it stops it -------

TALK_EVENTS = "() => window.empathicTalk.events.map(e => e.type)"


def _talk_wav(tmp_path: Path, name: str, parts: list[Any]) -> Path:
    """A fake-microphone WAV: sentences (str, spoken by Piper) and pauses (seconds, float)."""
    import numpy as np

    from empathic_agent.speak import load_tts
    from empathic_agent.speak.tts import wav_bytes

    tts = load_tts("piper-joe-medium")
    rate = tts.synthesize("a").sample_rate
    chunks = [np.asarray(tts.synthesize(p).samples) if isinstance(p, str) else np.zeros(int(p * rate), np.float32)
              for p in parts]
    path = tmp_path / name
    path.write_bytes(wav_bytes(np.concatenate(chunks).astype(np.float32), rate))
    return path


@contextlib.contextmanager
def _talk_page(browser, app_server, wav: Path):
    from empathic_agent.ui.process import CHROMIUM, CHROMIUM_ARGS

    args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"]
    with contextlib.closing(browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=args)) as b:
        context = b.new_context(viewport={"width": 1400, "height": 1000}, permissions=["microphone"])
        page = context.new_page()
        page.set_default_timeout(180_000)
        _open(page, app_server)
        page.locator("#talk-start").click()
        page.wait_for_function("() => window.empathicTalk && window.empathicTalk.ready")
        yield page
        page.locator("#talk-stop").click()


def _results(page) -> int:
    return page.evaluate(TALK_EVENTS).count("result")


def test_talk_mode_two_utterances_with_a_pause_give_two_turns(browser, app_server, artifacts, tmp_path):
    wav = _talk_wav(tmp_path, "two.wav", [1.0, "I lost my job today and I feel terrible.", 18.0,
                                          "I don't know what to tell my family.", 60.0])
    with _talk_page(browser, app_server, wav) as page:
        page.wait_for_function(f"() => ({TALK_EVENTS})().filter(t => t === 'result').length >= 2", timeout=240_000)
        events = page.evaluate(TALK_EVENTS)
        assert events.count("speech_ended") == 2 and "interrupted" not in events, events
        captions = page.locator("#talk-panel .talk-you").all_inner_texts()
        assert "job" in captions[0].lower() and "family" in captions[1].lower(), captions
        # The chat and the perception panel refresh after each spoken turn.
        page.wait_for_function(f"() => ({USER_TEXTS})().length >= 2")
        users = page.evaluate(USER_TEXTS)
        assert "job" in users[0].lower() and "family" in users[1].lower(), users
        assert "Heard:" in page.locator("#perception").inner_text()
        plays = page.evaluate("() => window.empathicTalk.plays")
        assert plays and all("start" in p for p in plays)
        page.screenshot(path=str(artifacts / "talk-two-turns.png"), full_page=True)


def test_talk_mode_talking_over_the_reply_stops_it(browser, app_server, artifacts, tmp_path):
    import numpy as np

    from empathic_agent.perceive.audio import _resample
    from empathic_agent.speak import load_tts

    wav = _talk_wav(tmp_path, "one.wav", [1.0, "I had a really rough week at work and I can't stop thinking about it.",
                                          90.0])
    tts = load_tts("piper-joe-medium")
    said = tts.synthesize("Wait, stop, I need to tell you something else first.")
    words = _resample(np.asarray(said.samples, np.float32), said.sample_rate)
    asked = tts.synthesize("Can you tell me more about that, please?")
    more = _resample(np.asarray(asked.samples, np.float32), asked.sample_rate)
    with _talk_page(browser, app_server, wav) as page:
        # The person waits until the agent is speaking with at least 1.5 s of its reply still to
        # play, and talks over it; after a reply too short for that, they ask for more and wait
        # again.  The page watches its own playback and feeds these samples into its microphone
        # path, in real time.
        page.evaluate("""([x, more]) => {
          const T = window.empathicTalk;
          let asked = 0;
          const watch = setInterval(() => {
            const now = performance.now();
            const played = T.plays.filter(p => p.start);
            const ends = Math.max(0, ...played.map(p => p.start + 1000 * p.duration_s));
            if (played.some(p => p.start <= now) && ends - now >= 1500) { clearInterval(watch); T.inject(x); return; }
            const results = T.events.filter(e => e.type === 'result').length;
            if (results > asked && now > ends + 500 && asked < 3) { asked = results; T.inject(more); }
          }, 10);
        }""", [[round(float(v), 4) for v in words], [round(float(v), 4) for v in more]])
        try:
            page.wait_for_function(f"() => ({TALK_EVENTS})().includes('interrupted')", timeout=240_000)
        except Exception as exc:
            events = page.evaluate("() => [window.empathicTalk.events.filter(e => e.type !== 'text'), window.empathicTalk.plays]")
            raise AssertionError(f"events: {events}") from exc
        stop = page.evaluate("() => window.empathicTalk.plays.find(p => p.stopped)")
        assert stop is not None
        page.wait_for_function("() => { const e = window.empathicTalk.events.map(e => e.type); "
                               "return e.lastIndexOf('result') > e.indexOf('interrupted'); }", timeout=240_000)
        try:
            page.wait_for_function(f"() => ({BOT_TEXTS})().some(t => t.includes('[interrupted]'))", timeout=30_000)
        except Exception as exc:
            events = page.evaluate("() => window.empathicTalk.events.filter(e => e.type !== 'text')")
            raise AssertionError(f"chat: {page.evaluate(BOT_TEXTS)}; events: {events}") from exc
        page.screenshot(path=str(artifacts / "talk-barge-in.png"), full_page=True)


def test_talk_mode_noise_alone_gives_no_turn(browser, app_server, tmp_path):
    import numpy as np

    from empathic_agent.speak.tts import wav_bytes

    rng = np.random.default_rng(0)
    wav = tmp_path / "noise.wav"
    wav.write_bytes(wav_bytes((0.01 * rng.standard_normal(22050 * 12)).astype(np.float32), 22050))
    with _talk_page(browser, app_server, wav) as page:
        page.wait_for_timeout(10_000)
        events = page.evaluate(TALK_EVENTS)
        assert "result" not in events and "speech_ended" not in events, events
