"""Real ``empathic serve`` processes for the fault tests: start, call, kill, restart on the same data.

When the tests run as root, servers run without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (setpriv), so
that a directory made read-only is read-only for them too, as it would be for a service account."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from empathic_agent.ui.process import free_port

VENV_BIN = Path(sys.executable).parent
_NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
           "--inh-caps=-dac_override,-dac_read_search", "--"]


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """A server on its own data under ``home``: text encoder only, short greedy replies."""
    return {**os.environ, "EMPATHIC_MEMORY_DIR": str(home / "memory"), "EMPATHIC_API_KEYS_DB": str(home / "api.sqlite"),
            "EMPATHIC_ENCODERS": "text", "EMPATHIC_MAX_NEW_TOKENS": "16", "EMPATHIC_TEMPERATURE": "0",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def as_service_account() -> list[str]:
    return _NO_DAC if os.geteuid() == 0 and shutil.which("setpriv") else []


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def call(self, key: str | None, method: str, path: str, body: Any = None, *, timeout: float = 300,
             data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON body) — errors are returned, not raised."""
        h = {"Content-Type": "application/json", **(headers or {})}
        if key:
            h["X-API-Key"] = key
        raw = data if data is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, method=method, data=raw, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def rss_peak_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


@contextlib.contextmanager
def serve(env: dict[str, str], log: Path, *args: str) -> Iterator[Server]:
    port = free_port()
    with open(log, "a") as out:
        proc = subprocess.Popen([*as_service_account(), str(VENV_BIN / "empathic"), "serve", "--port", str(port),
                                 "--no-warm-up", *args], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc)
            yield Server(proc, f"http://127.0.0.1:{port}", log)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "empathic"), *args], env=env, capture_output=True, text=True, timeout=120)
