"""The turn graph and the Agent facade, with a fake LLM (subclass of the real LLM base class)."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from empathic_agent.agent import Agent, TextChunk, TurnResult
from empathic_agent.errors import EmptyInputError, InputError, InputTooLongError, LLMConnectionError
from empathic_agent.graph import build_services
from empathic_agent.graph.nodes import FALLBACK_REPLY
from empathic_agent.testing import ContextRecordingEncoder, FakeEncoder, FakeLLM


def _words(content: str) -> str:
    """A prompt message without the planner's reply hint (appended to the latest user turn)."""
    return content.split("\n\nIn ", 1)[0]


async def _agent(settings, llm, checkpointer=None, encoder=None, memory=None):
    return await Agent.open(settings, services=build_services(settings, llm=llm, text_encoder=encoder,
                                                              memory=memory, speech=None, face=None),
                            checkpointer=checkpointer if checkpointer is not None else InMemorySaver())


async def test_reply_streams_in_chunks_and_result_comes_last(settings):
    # The reply guard releases the streamed reply sentence by sentence (each after it passed).
    llm = FakeLLM(["That sounds really hard. What happened?"], chunk_size=5)
    agent = await _agent(settings, llm)
    events = [e async for e in agent.stream("u1", "s1", text="I lost my job")]
    assert isinstance(events[-1], TurnResult)
    chunks = [e.text for e in events if isinstance(e, TextChunk)]
    assert chunks == ["That sounds really hard.", " What happened?"]
    res = events[-1]
    assert res.reply == "That sounds really hard. What happened?" and res.user_text == "I lost my job" and res.ok
    assert set(res.timings) == {"perceive", "safety", "plan", "generate"}
    assert res.generation["backend"] == "fake"


async def test_history_reaches_the_prompt_with_system_prompt_first(settings):
    llm = FakeLLM(["one", "two"])
    agent = await _agent(settings, llm)
    await agent.respond("u1", "s1", text="hello")
    await agent.respond("u1", "s1", text="again")
    last = llm.prompts[-1]
    assert last[0].role == "system" and last[0].content.startswith(settings.system_prompt)
    assert "You are Sam" in last[0].content  # persona first; this turn's register last, before the message
    assert last[-2].role == "system" and " tone." in last[-2].content
    assert [(m.role, _words(m.content)) for m in last[1:-2] + last[-1:]] == [
        ("user", "hello"), ("assistant", "one"), ("user", "again")]


async def test_sessions_and_users_do_not_share_history(settings):
    llm = FakeLLM(["ok"])
    agent = await _agent(settings, llm)
    await agent.respond("alice", "s1", text="alice secret")
    await agent.respond("bob", "s1", text="bob here")
    await agent.respond("alice", "s2", text="new session")
    assert [m.content for m in await agent.history("bob", "s1")] == ["bob here", "ok"]
    assert [m.content for m in await agent.history("alice", "s2")] == ["new session", "ok"]
    assert all("alice secret" not in m.content for p in llm.prompts[1:] for m in p)


async def test_llm_failure_gives_a_graceful_reply_and_keeps_the_conversation(settings):
    good = FakeLLM(["fine"])
    saver = InMemorySaver()
    agent = await _agent(settings, good, saver)
    await agent.respond("u", "s", text="first")
    down = await _agent(settings, FakeLLM(error=LLMConnectionError("LLM server at X is unreachable")), saver)
    res = await down.respond("u", "s", text="second")
    assert res.reply == FALLBACK_REPLY
    assert not res.ok and res.degraded[0]["step"] == "generate"
    assert "unreachable" in res.degraded[0]["message"]
    # The person's message is kept; the next real reply sees it, and not the fallback text.
    back = FakeLLM(["welcome back"])
    agent2 = await _agent(settings, back, saver)
    res2 = await agent2.respond("u", "s", text="third")
    assert res2.ok and res2.degraded == ()
    prompt = [(m.role, _words(m.content)) for m in back.prompts[-1][1:] if m.role != "system"]
    assert prompt == [("user", "first"), ("assistant", "fine"), ("user", "second\nthird")]


async def test_failed_turn_errors_do_not_leak_into_the_next_turn(settings):
    saver = InMemorySaver()
    await (await _agent(settings, FakeLLM(error=LLMConnectionError("down")), saver)).respond("u", "s", text="a")
    res = await (await _agent(settings, FakeLLM(["ok"]), saver)).respond("u", "s", text="b")
    assert res.degraded == () and set(res.timings) == {"perceive", "safety", "plan", "generate"}


@pytest.mark.parametrize("text, err", [("", EmptyInputError), ("  \n\t", EmptyInputError),
                                       ("x" * 5000, InputTooLongError)])
async def test_bad_input_is_rejected_before_touching_the_conversation(settings, text, err):
    llm = FakeLLM(["ok"])
    agent = await _agent(settings, llm)
    await agent.respond("u", "s", text="hello")
    with pytest.raises(err):
        await agent.respond("u", "s", text=text)
    assert [m.content for m in await agent.history("u", "s")] == ["hello", "ok"]
    assert len(llm.prompts) == 1


async def test_invalid_utf8_and_control_characters_get_a_sane_reply(settings):
    llm = FakeLLM(["ok"])
    agent = await _agent(settings, llm)
    res = await agent.respond("u", "s", text=b"I feel \xff\xfe bad\x00\x07")
    assert res.user_text == "I feel \ufffd\ufffd bad" and res.reply == "ok"


@pytest.mark.parametrize("user, session", [("", "s"), ("a/b", "s"), ("u", "../etc"), ("u", "x" * 200)])
async def test_invalid_ids_are_rejected(settings, user, session):
    agent = await _agent(settings, FakeLLM())
    with pytest.raises(InputError, match="invalid"):
        await agent.respond(user, session, text="hi")


async def test_conversation_survives_reopening_the_sqlite_checkpointer(settings):
    a1 = await Agent.open(settings, services=build_services(settings, llm=FakeLLM(["first reply"]), text_encoder=None, memory=None,
                                                            speech=None, face=None))
    await a1.respond("u", "s", text="remember me")
    await a1.aclose()
    assert settings.checkpoint_path.exists()
    llm = FakeLLM(["second reply"])
    async with await Agent.open(settings, services=build_services(settings, llm=llm, text_encoder=None, memory=None, speech=None, face=None)) as a2:
        await a2.respond("u", "s", text="still there?")
        assert [m.content for m in await a2.history("u", "s")] == [
            "remember me", "first reply", "still there?", "second reply"]
    assert [_words(m.content) for m in llm.prompts[0][1:] if m.role != "system"] == [
        "remember me", "first reply", "still there?"]


async def test_parallel_users_get_their_own_replies(settings):
    class EchoLLM(FakeLLM):
        async def _stream_impl(self, messages, options):
            await asyncio.sleep(0.01)
            yield "echo: " + _words(messages[-1].content)

    agent = await _agent(settings, EchoLLM())
    users = [f"user{i}" for i in range(12)]
    results = await asyncio.gather(*(agent.respond(u, "s", text=f"I am {u}") for u in users))
    for u, r in zip(users, results):
        assert r.reply == f"echo: I am {u}" and r.user_id == u


# --- the encode step -------------------------------------------------------------------------
async def test_encode_step_puts_the_fused_state_into_the_result_and_the_prompt(settings):
    llm = FakeLLM(["I'm sorry."])
    enc = FakeEncoder({"my dog died": "sadness"})
    agent = await _agent(settings, llm, encoder=enc)
    res = await agent.respond("u", "s", text="my dog died")
    assert enc.calls == [["my dog died"]]
    state = res.fused_state
    assert state.top_category == "sadness" and state.mean[0] < -0.3
    assert res.readings["text"]["modality"] == "text"
    assert "sad" in res.perception
    assert "encode" in res.timings
    system = "\n".join(m.content for m in llm.prompts[-1] if m.role == "system")
    assert system.startswith(settings.system_prompt) and res.perception in system


async def test_previous_state_is_the_prior_of_the_next_turn(settings):
    from empathic_agent.latent import Reading

    llm = FakeLLM(["ok"])
    enc = FakeEncoder({"awful news": "sadness"}, default=Reading.uninformative("text"))
    agent = await _agent(settings, llm, encoder=enc)
    await agent.respond("u", "s", text="awful news")
    res = await agent.respond("u", "s", text="hm")  # uninformative words: the state carries over
    state = res.fused_state
    assert state.top_category == "sadness" and state.mean[0] < -0.3
    assert state.contribution("prior") > 0.99
    snap = await agent.graph.aget_state(agent._config("u", "s"))
    assert [e["fused"]["top"] for e in snap.values["emotion_trajectory"]] == ["sadness", "sadness"]


async def test_failing_encoder_degrades_and_the_turn_still_gets_a_reply(settings):
    llm = FakeLLM(["still here"])
    agent = await _agent(settings, llm, encoder=FakeEncoder(error=RuntimeError("onnx exploded")))
    res = await agent.respond("u", "s", text="hello")
    assert res.reply == "still here"
    assert [e["step"] for e in res.degraded] == ["encode"] and "onnx exploded" in res.degraded[0]["message"]
    assert res.emotion is None and not any("What you perceive" in m.content for m in llm.prompts[-1])


async def test_without_an_encoder_the_graph_has_no_encode_step(settings):
    agent = await _agent(settings, FakeLLM(["ok"]))
    assert "encode" not in agent.graph.nodes
    res = await agent.respond("u", "s", text="hi")
    assert res.emotion is None and set(res.timings) == {"perceive", "safety", "plan", "generate"}


# --- recall and remember (real Chroma in a temp dir, fake embedder) ------------------------------
@pytest.fixture
def memory(settings):
    from empathic_agent.memory import MemoryService
    from empathic_agent.testing import FakeEmbedder

    svc = MemoryService.from_settings(settings, embedder=FakeEmbedder())
    yield svc
    svc.close()


async def test_an_earlier_moment_is_recalled_into_the_prompt_as_a_memory(settings, memory):
    llm = FakeLLM(["I'm sorry about Biscuit.", "That makes sense."])
    agent = await _agent(settings, llm, encoder=FakeEncoder({"my dog Biscuit died last spring": "sadness"}),
                         memory=memory)
    first = await agent.respond("ann", "monday", text="my dog Biscuit died last spring")
    assert first.ok and first.timings.keys() >= {"recall", "remember"}
    res = await agent.respond("ann", "friday", text="I keep thinking about Biscuit the dog")
    snap = await agent.graph.aget_state(agent._config("ann", "friday"))
    recalled = snap.values["memories"]
    assert recalled and recalled[0]["text"] == "my dog Biscuit died last spring"
    assert recalled[0]["scores"]["semantic"] > 0
    system = "\n".join(m.content for m in llm.prompts[-1] if m.role == "system")
    assert "my dog Biscuit died last spring" in system
    assert res.ok


async def test_exchanges_still_in_the_history_window_are_not_recalled_again(settings, memory):
    """The prompt already holds the recent exchanges; recalling them would only repeat them."""
    import dataclasses

    settings = dataclasses.replace(settings, history_messages=4)
    llm = FakeLLM(["I'm sorry about Biscuit.", "That makes sense.", "I hear you.", "Go on."])
    agent = await _agent(settings, llm, memory=memory)
    await agent.respond("ann", "s", text="my dog Biscuit died last spring")
    await agent.respond("ann", "s", text="Biscuit the dog was my best friend")
    snap = await agent.graph.aget_state(agent._config("ann", "s"))
    assert snap.values["memories"] == []  # the first exchange is in the window
    await agent.respond("ann", "s", text="work is busy")
    await agent.respond("ann", "s", text="I keep thinking about Biscuit the dog")
    snap = await agent.graph.aget_state(agent._config("ann", "s"))
    recalled = [m["text"] for m in snap.values["memories"]]
    # Turns 1-2 have left the 4-message window and come back as memories; turn 3 has not.
    assert "my dog Biscuit died last spring" in recalled and "work is busy" not in recalled
    assert [m["rank"] for m in snap.values["memories"]] == list(range(1, len(recalled) + 1))


async def test_memories_of_one_user_never_reach_another(settings, memory):
    llm = FakeLLM(["ok"])
    agent = await _agent(settings, llm, memory=memory)
    await agent.respond("alice", "s", text="my secret diagnosis is private")
    await agent.respond("bob", "s", text="tell me the secret diagnosis")
    snap = await agent.graph.aget_state(agent._config("bob", "s"))
    assert snap.values["memories"] == []
    assert all("private" not in m.content for m in llm.prompts[-1])


async def test_a_failed_generation_is_not_remembered(settings, memory):
    agent = await _agent(settings, FakeLLM(error=LLMConnectionError("down")), memory=memory)
    res = await agent.respond("u", "s", text="nobody answered this")
    assert res.reply == FALLBACK_REPLY
    assert memory.count("u") == 0


async def test_export_and_delete_user_cover_conversations_and_memories(settings, memory):
    agent = await _agent(settings, FakeLLM(["ok"]), memory=memory)
    await agent.respond("carol", "s1", text="I love painting")
    await agent.respond("carol", "s2", text="work was hard today")
    await agent.respond("dave", "s1", text="hello there")
    data = await agent.export_user("carol")
    assert set(data["conversations"]) == {"s1", "s2"}
    assert data["conversations"]["s1"][0] == {"role": "user", "content": "I love painting"}
    texts = " ".join(m["text"] for m in data["memories"]["memories"])
    assert "painting" in texts and "hello there" not in texts
    gone = await agent.delete_user("carol")
    assert gone["conversations"] == 2 and gone["memories"] >= 2
    assert await agent.sessions("carol") == [] and memory.count("carol") == 0
    assert await agent.history("carol", "s1") == []
    assert await agent.sessions("dave") == ["s1"] and memory.count("dave") >= 1


async def test_a_context_reading_encoder_gets_the_earlier_turns_and_this_turns_prior(settings):
    encoder = ContextRecordingEncoder()
    agent = await _agent(settings, FakeLLM(["one", "two"]), encoder=encoder)
    await agent.respond("u1", "s1", text="hello")
    await agent.respond("u1", "s1", text="again")
    (_, first), (_, second) = encoder.seen
    assert first.turns == () and first.state is None
    assert second.turns == ("hello", "one")  # both sides, oldest first, without this message
    assert second.state is not None and second.state.modality == "prior"
    other = ContextRecordingEncoder()
    agent2 = await _agent(settings, FakeLLM(["x"]), encoder=other)
    await agent2.respond("u2", "s9", text="new person")
    assert other.seen[0][1].turns == ()  # nothing leaks from another conversation
