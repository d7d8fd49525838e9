from langchain_core.messages import AIMessage, HumanMessage

from empathic_agent.generate.prompt import build_prompt, window_start


def test_system_prompt_first_then_history_in_order():
    hist = [HumanMessage("a"), AIMessage("b"), HumanMessage("c")]
    p = build_prompt("SYS", hist, max_messages=8)
    assert [(m.role, m.content) for m in p] == [("system", "SYS"), ("user", "a"), ("assistant", "b"), ("user", "c")]


def test_history_is_cut_to_the_newest_messages_starting_with_the_person():
    hist = [HumanMessage(str(i)) if i % 2 == 0 else AIMessage(str(i)) for i in range(9)]
    p = build_prompt("SYS", hist, max_messages=4)
    assert [m.content for m in p[1:]] == ["6", "7", "8"]
    assert p[1].role == "user"


def test_fallback_replies_are_left_out_and_person_messages_merged():
    hist = [HumanMessage("first"), AIMessage("sorry, model down", additional_kwargs={"fallback": True}),
            HumanMessage("second")]
    p = build_prompt("SYS", hist, max_messages=8)
    assert [(m.role, m.content) for m in p[1:]] == [("user", "first\nsecond")]


def test_this_turns_context_comes_last_before_the_newest_message():
    hist = [HumanMessage("a"), AIMessage("b"), HumanMessage("c")]
    p = build_prompt("SYS", hist, max_messages=8, perception="seems sad", memories="MEM", register="REG",
                     reply_hint="HINT")
    assert [m.role for m in p] == ["system", "user", "assistant", "system", "user"]
    assert p[0].content == "SYS" and p[3].content == "What you perceive in the person right now: seems sad.\nMEM\nREG"
    assert p[4].content == "c\n\nHINT"
    # The next turn's prompt starts with this one's system prompt and history: a reusable prefix.
    nxt = build_prompt("SYS", hist + [AIMessage("d"), HumanMessage("e")], max_messages=8, register="REG2")
    assert [(m.role, m.content) for m in nxt[:3]] == [(m.role, m.content) for m in p[:3]]


def test_the_history_window_moves_in_steps():
    starts = [window_start(n, 8) for n in range(1, 16, 2)]  # prompts have an odd message count
    assert starts == [0, 0, 0, 0, 4, 4, 8, 8]
    assert all(n - window_start(n, 8) <= 8 for n in range(1, 40))
    assert window_start(9, 4) == 6 and window_start(1, 1) == 0


def test_llm_dtype_setting():
    import pytest

    from empathic_agent.errors import ConfigError
    from empathic_agent.generate.transformers_llm import resolve_dtype
    from empathic_agent.settings import Settings

    assert resolve_dtype("float32") == "float32" and resolve_dtype("bfloat16") == "bfloat16"
    assert resolve_dtype("auto") in ("float32", "bfloat16")
    with pytest.raises(ConfigError, match="llm_dtype"):
        Settings.from_env({}, llm_dtype="int4")
