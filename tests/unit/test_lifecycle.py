"""One loading lifecycle for every model-backed backend (encoder, STT, TTS, embedder): once, under
the process-wide model-loading lock, timed, vendor errors translated."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from empathic_agent.encode.base import Encoder, EncoderError
from empathic_agent.errors import EmpathicError, LLMError, ModelError
from empathic_agent.evals.pair_model import PairClassifier
from empathic_agent.generate.llm import LLM
from empathic_agent.lifecycle import AsyncLoadable, Loadable
from empathic_agent.memory.embedder import Embedder, EmbeddingError
from empathic_agent.models.base import LOAD_LOCK
from empathic_agent.perceive.stt import STT, STTError
from empathic_agent.speak.tts import TTS, TTSError


class Slow(Loadable):
    kind = "thing"
    name = "slow"

    def __init__(self, fail: Exception | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.held_global_lock = False
        self.fail = fail

    def _load_impl(self) -> None:
        self.calls += 1
        # LOAD_LOCK is re-entrant: held by this thread means acquire succeeds at once; another
        # thread holding it would block us (tested below by trying from a second thread).
        got = []
        t = threading.Thread(target=lambda: got.append(LOAD_LOCK.acquire(blocking=False)))
        t.start()
        t.join()
        if got and got[0]:
            LOAD_LOCK.release()
        self.held_global_lock = not got[0]
        time.sleep(0.05)
        if self.fail is not None:
            raise self.fail


def test_concurrent_first_uses_load_once_under_the_global_lock():
    thing = Slow()
    threads = [threading.Thread(target=thing.load) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert thing.calls == 1 and thing.loaded
    assert thing.held_global_lock
    assert thing.load_s is not None and thing.load_s > 0


def test_vendor_errors_are_translated_and_ours_pass_through():
    with pytest.raises(EmpathicError, match="slow thing failed while loading: OSError: disk"):
        Slow(OSError("disk")).load()
    ours = EmpathicError("already ours")
    with pytest.raises(EmpathicError) as caught:
        Slow(ours).load()
    assert caught.value is ours
    failed = Slow(OSError("disk"))
    with pytest.raises(EmpathicError):
        failed.load()
    assert not failed.loaded  # a failed load is tried again next time


@pytest.mark.parametrize("base, flavour, error", [
    (Encoder, Loadable, EncoderError), (STT, Loadable, STTError), (TTS, Loadable, TTSError),
    (Embedder, Loadable, EmbeddingError), (PairClassifier, Loadable, ModelError), (LLM, AsyncLoadable, LLMError)])
def test_every_backend_base_shares_the_lifecycle(base, flavour, error):
    assert issubclass(base, flavour)
    assert base.error_class is error
    assert "load" not in vars(base)  # no base writes its own copy


class SlowAsync(AsyncLoadable):
    kind = "thing"
    name = "slow-async"

    def __init__(self, fail: Exception | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail = fail

    async def _load_impl(self) -> None:
        self.calls += 1
        await asyncio.sleep(0.05)
        if self.fail is not None:
            raise self.fail


async def test_async_first_requests_share_one_load_and_errors_are_translated():
    thing = SlowAsync()
    await asyncio.gather(*(thing.load() for _ in range(5)))
    assert thing.calls == 1 and thing.loaded and thing.load_s > 0
    with pytest.raises(EmpathicError, match="slow-async thing failed while loading: OSError: gone"):
        await SlowAsync(OSError("gone")).load()
