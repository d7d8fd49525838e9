"""The OpenAI-compatible backend's request building and error translation, over an in-process
httpx transport (the real-server tests are in tests/integration/test_llm_backends.py)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from empathic_agent.errors import LLMError, LLMRequestError
from empathic_agent.generate.llm import ChatMessage, GenerationOptions
from empathic_agent.generate.openai_llm import OpenAICompatibleLLM

MSGS = [ChatMessage("system", "s"), ChatMessage("user", "hi")]


def _sse(*chunks: str) -> bytes:
    lines = []
    for c in chunks:
        ev = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
              "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]}
        lines.append(f"data: {json.dumps(ev)}\n\n")
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def _llm(handler, **kw) -> tuple[OpenAICompatibleLLM, list[dict]]:
    seen: list[dict] = []

    def wrapped(request: httpx.Request) -> httpx.Response:
        seen.append({"path": request.url.path,
                     "body": json.loads(request.content) if request.content else None})
        return handler(request)

    llm = OpenAICompatibleLLM("http://test/v1", max_retries=0, **kw)
    llm._client = openai.AsyncOpenAI(base_url="http://test/v1", api_key="k", max_retries=0,
                                     http_client=httpx.AsyncClient(transport=httpx.MockTransport(wrapped)))
    return llm, seen


async def test_streams_chunks_and_passes_vllm_extras_through():
    llm, seen = _llm(lambda r: httpx.Response(200, content=_sse("Hel", "lo"),
                                              headers={"content-type": "text/event-stream"}),
                     model="m", extra_body={"guided_choice": ["yes", "no"]})
    out = [c async for c in llm.stream(MSGS, GenerationOptions(max_new_tokens=7, seed=3,
                                                               extra={"repetition_penalty": 1.1}))]
    assert out == ["Hel", "lo"]
    body = seen[0]["body"]
    assert body["guided_choice"] == ["yes", "no"] and body["repetition_penalty"] == 1.1
    assert body["max_tokens"] == 7 and body["seed"] == 3 and body["stream"] is True
    assert body["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]


async def test_model_is_taken_from_the_server_listing_when_not_configured():
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": "meta-llama/Llama-3.1-8B-Instruct", "object": "model", "created": 0, "owned_by": "vllm"}]})
        return httpx.Response(200, content=_sse("ok"), headers={"content-type": "text/event-stream"})

    llm, seen = _llm(handler)
    assert await llm.complete(MSGS) == "ok"
    assert seen[-1]["body"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize("status, err, text", [
    (401, LLMRequestError, "API key"),
    (404, LLMRequestError, "not found"),
    (400, LLMRequestError, "rejected the request"),
    (500, LLMError, r"failed \(500\)"),
])
async def test_http_errors_become_project_errors(status, err, text):
    llm, _ = _llm(lambda r: httpx.Response(status, json={"error": {"message": "nope"}}), model="m")
    with pytest.raises(err, match=text) as info:
        await llm.complete(MSGS)
    assert info.value.retryable == (status >= 500)
