import pytest

from empathic_agent.errors import EmptyInputError, InputError, InputTooLongError
from empathic_agent.perceive.text import clean_text


@pytest.mark.parametrize("raw", ["", "   ", "\n\t \r\n", "\x00\x07\x1b[31m\x1b[0m", None])
def test_empty_inputs_are_rejected(raw):
    with pytest.raises(EmptyInputError):
        clean_text(raw, max_chars=100)


def test_invalid_utf8_bytes_are_replaced_not_fatal():
    assert clean_text(b"caf\xe9 is closed \xff", max_chars=100) == "caf\ufffd is closed \ufffd"


def test_control_characters_and_ansi_are_removed_but_newlines_kept():
    assert clean_text("hi\x00 there\x1b[1m!\r\nsecond\x7f line", max_chars=100) == "hi there!\nsecond line"


def test_lone_surrogates_do_not_survive():
    out = clean_text("bad \udcff byte", max_chars=100)
    out.encode("utf-8")  # would raise if a surrogate were left
    assert out.startswith("bad ") and out.endswith(" byte")


def test_too_long_is_rejected_with_the_limit_in_the_message():
    with pytest.raises(InputTooLongError, match="limit is 10"):
        clean_text("x" * 11, max_chars=10)
    assert clean_text("x" * 10, max_chars=10) == "x" * 10


def test_non_text_is_rejected():
    with pytest.raises(InputError, match="must be text"):
        clean_text(42, max_chars=10)  # type: ignore[arg-type]
