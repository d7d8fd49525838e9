from langchain_core.messages import AIMessage, HumanMessage

from empathic_agent.generate.prompt import build_prompt


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
