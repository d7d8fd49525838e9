"""A real OpenAI-compatible server process on this machine, for testing the vLLM client path.

vLLM needs a GPU; on CPU machines ``transformers serve`` exposes the same ``/v1/chat/completions``
API (streaming included) over the embedded model's prepared directory. The integration tests and
``empathic bench llm --serve-local`` start it with :class:`LocalOpenAIServer`; a person can start
it with ``empathic llm-server``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from empathic_agent.errors import BackendUnavailableError, LLMConnectionError

__all__ = ["LocalOpenAIServer", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalOpenAIServer:
    """``transformers serve MODEL_DIR`` on 127.0.0.1, started and stopped as a context manager."""

    def __init__(self, model_dir: str | Path, *, port: int | None = None, host: str = "127.0.0.1",
                 startup_timeout_s: float = 180.0, log: IO[Any] | None = None) -> None:
        self.model_dir = str(model_dir)
        self.host = host
        self.port = port or free_port()
        self.startup_timeout_s = startup_timeout_s
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model_id(self) -> str:
        return self.model_dir

    def command(self) -> list[str]:
        exe = shutil.which("transformers", path=os.path.dirname(sys.executable)) or shutil.which("transformers")
        if exe is None:
            raise BackendUnavailableError(
                "`transformers serve` is not installed; pip install 'transformers[serving]'")
        return [exe, "serve", self.model_dir, "--device", "cpu", "--host", self.host,
                "--port", str(self.port), "--dtype", "float32", "--log-level", "warning"]

    def start(self) -> "LocalOpenAIServer":
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.proc = subprocess.Popen(self.command(), env=env, stdout=self.log or subprocess.DEVNULL,
                                     stderr=self.log or subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LLMConnectionError(f"the local OpenAI-compatible server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise LLMConnectionError(f"the local server did not become healthy in {self.startup_timeout_s:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "LocalOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
