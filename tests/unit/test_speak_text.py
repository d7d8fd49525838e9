"""Speakable text: markup, links, emoji, numbers, sentence splitting (also streamed) and the cap."""

from __future__ import annotations

import pytest

from empathic_agent.speak.text import (
    MAX_SPOKEN_CHARS,
    SentenceSplitter,
    cap_sentences,
    number_to_words,
    ordinal_to_words,
    prepare_speech,
    speakable,
    split_sentences,
    year_to_words,
)


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (42, "forty-two"), (100, "one hundred"),
    (105, "one hundred five"), (1200, "one thousand two hundred"),
    (1_000_001, "one million one"), (-5, "minus five"),
    (2_500_000_000, "two billion five hundred million"),
])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_huge_numbers_are_read_digit_by_digit():
    assert number_to_words(10**16) == " ".join(["one"] + ["zero"] * 16)


@pytest.mark.parametrize("n, words", [(1, "first"), (2, "second"), (3, "third"), (12, "twelfth"),
                                      (21, "twenty-first"), (30, "thirtieth"), (100, "one hundredth")])
def test_ordinals(n, words):
    assert ordinal_to_words(n) == words


@pytest.mark.parametrize("year, words", [
    (1999, "nineteen ninety-nine"), (1905, "nineteen oh five"), (1900, "nineteen hundred"),
    (2000, "two thousand"), (2005, "two thousand five"), (2024, "twenty twenty-four"),
])
def test_years(year, words):
    assert year_to_words(year) == words


@pytest.mark.parametrize("text, spoken", [
    ("I scored 45% today.", "I scored forty-five percent today."),
    ("It costs $3.50.", "It costs three dollars and fifty cents."),
    ("It costs $1.", "It costs one dollar."),
    ("Worth £2 million.", "Worth two million pounds."),
    ("In 2023 I moved.", "In twenty twenty-three I moved."),
    ("About 1,200 people.", "About one thousand two hundred people."),
    ("Meet at 3:30pm.", "Meet at three thirty p m."),
    ("Meet at 7:05.", "Meet at seven oh five."),
    ("On the 2nd of May.", "On the second of May."),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("Wait 5-10 minutes.", "Wait five to ten minutes."),
    ("It was -5 degrees.", "It was minus five degrees."),
    ("Call 5551234567 now.", "Call five five five one two three four five six seven now."),
    ("Agent 007.", "Agent zero zero seven."),
    ("2 + 2 = 4", "two plus two equals four"),
])
def test_numbers_are_read_sensibly(text, spoken):
    assert speakable(text) == spoken


def test_markdown_is_unwrapped():
    text = "# Tips\n\n**Breathe** slowly and _gently_, see [this guide](https://example.com/x) ~~now~~."
    assert speakable(text) == "Tips. Breathe slowly and gently, see this guide now."


def test_code_blocks_are_dropped_and_inline_code_kept():
    text = "Try this:\n```python\nprint('hello')\n```\nThen run `pytest` again."
    out = speakable(text)
    assert "print" not in out and "`" not in out
    assert "Then run pytest again." in out


def test_lists_tables_quotes_and_html():
    assert speakable("- one thing\n- another thing") == "one thing. another thing"
    assert speakable("1. Rest\n2) Drink water") == "Rest. Drink water"
    assert speakable("| a | b |\n|---|---|\n| x | y |") == "a, b. x, y"
    assert speakable("> I feel *lost*") == "I feel lost"
    assert speakable("<p>Hello &amp; <b>welcome</b></p>") == "Hello and welcome"


def test_urls_and_emails_are_named_not_spelled():
    assert speakable("Read https://example.com/a/b?c=1. Or www.help.org.") == "Read a link. Or a link."
    assert speakable("Mail me at someone@example.org today") == "Mail me at an email address today"


def test_emoji_and_pictographs_are_removed():
    assert speakable("I'm so happy for you 😊🎉👍🏽!") == "I'm so happy for you!"
    assert speakable("Family: 👨‍👩‍👧 together") == "Family: together"
    assert speakable("❤️") == ""
    assert speakable("") == ""


def test_punctuation_is_tidied():
    assert speakable("Really??!! Wait... what?") == "Really?! Wait, what?"
    assert speakable("  lots   of\tspace  ") == "lots of space"


@pytest.mark.parametrize("text", [
    "**Bold** and 45% of $3.50 at 3:30pm on the 2nd, see https://x.com. 😊",
    "# Title\n- item one\n- item 2\n\n| a | b |",
    "Wait... what?! It's 1999.",
])
def test_speakable_is_idempotent(text):
    once = speakable(text)
    assert once and speakable(once) == once


def test_split_sentences_respects_abbreviations_decimals_and_initials():
    text = "Dr. Smith paid 3.5 dollars, e.g. for bread. J. K. Rowling wrote it! Did you know? Yes."
    assert split_sentences(text) == ["Dr. Smith paid 3.5 dollars, e.g. for bread.", "J. K. Rowling wrote it!",
                                     "Did you know?", "Yes."]


def test_split_sentences_at_newlines_and_list_items():
    text = "Here are ideas:\n1. Breathe in.\n2. Walk outside\n- Call a friend"
    assert split_sentences(text) == ["Here are ideas:", "1. Breathe in.", "2. Walk outside",
                                     "- Call a friend"]


def test_split_keeps_code_fences_whole():
    text = "Look:\n```\na. b. c.\nd\n```\nDone."
    parts = split_sentences(text)
    assert parts[0] == "Look:" and parts[-1] == "Done."
    assert any(p.startswith("```") and p.endswith("```") for p in parts)


def test_long_run_on_sentence_is_cut_at_a_clause_boundary():
    text = ", ".join(["this goes on and on"] * 30) + "."
    parts = split_sentences(text, max_chars=100)
    assert len(parts) > 3
    assert all(len(p) <= 100 for p in parts)
    assert all(p.endswith(",") for p in parts[:-1])  # cut after a comma, not mid-word
    assert " ".join(parts) == text


def test_streamed_splitting_matches_whole_text_splitting():
    text = ("Hello there. I hear you, and the price is 3.5 dollars! Dr. Who is here? "
            "New line follows\nand another one.\n\n- a bullet\nEnd")
    whole = split_sentences(text)
    for size in (1, 3, 7, 50):
        splitter = SentenceSplitter()
        got = []
        for i in range(0, len(text), size):
            got += splitter.feed(text[i:i + size])
        got += splitter.flush()
        assert got == whole, size


def test_a_full_stop_at_the_end_of_a_chunk_waits_for_the_next_chunk():
    splitter = SentenceSplitter()
    assert splitter.feed("It costs 3.") == []  # could be "3.5"
    assert splitter.feed("5 dollars. And") == ["It costs 3.5 dollars."]
    assert splitter.flush() == ["And"]


def test_splitter_emits_a_sentence_as_soon_as_it_is_complete():
    splitter = SentenceSplitter()
    assert splitter.feed("I'm here with you.") == []
    assert splitter.feed(" ") == ["I'm here with you."]


def test_cap_keeps_whole_sentences():
    sentences = [f"Sentence number {i} is here." for i in range(100)]
    kept, truncated = cap_sentences(sentences, 120)
    assert truncated and kept == sentences[: len(kept)]
    assert sum(len(s) + 1 for s in kept) - 1 <= 120
    assert cap_sentences(["Short."], 120) == (["Short."], False)


def test_cap_cuts_a_single_overlong_sentence_at_a_word():
    kept, truncated = cap_sentences(["word " * 200], 50)
    assert truncated and len(kept) == 1
    assert len(kept[0]) <= 51 and kept[0].endswith("word.")


def test_prepare_speech_normalises_and_caps_long_text():
    text = "**Breathe** in 4 seconds 😊. " * 100
    prepared = prepare_speech(text)
    assert prepared.truncated
    assert len(prepared.text) <= MAX_SPOKEN_CHARS
    assert "*" not in prepared.text and "4" not in prepared.text and "😊" not in prepared.text
    assert prepared.sentences[0] == "Breathe in four seconds."
    assert prepare_speech("🙂🙂").sentences == ()


def test_a_number_to_call_or_text_is_read_digit_by_digit():
    """A crisis reply's numbers are what the listener must catch: "nine one one", never "nine
    hundred eleven"; other numbers keep their ordinary reading."""
    assert speakable("Please call 911 right now.") == "Please call nine one one right now."
    assert speakable("call or text 988") == "call or text nine eight eight"
    assert speakable("988 Suicide & Crisis Lifeline") == "nine eight eight Suicide and Crisis Lifeline"
    assert speakable("text HOME to 741741") == "text HOME to seven four one seven four one"
    assert speakable("Samaritans: call 116 123.") == "Samaritans: call one one six, one two three."
    assert speakable("In the UK call 999.") == "In the UK call nine nine nine."
    assert speakable("999 people came in 1999") == "nine hundred ninety-nine people came in nineteen ninety-nine"
    assert speakable("call me in 20 minutes") == "call me in twenty minutes"
