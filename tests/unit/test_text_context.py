"""The conversational data of the text encoder's context head and the eval's context column
(no model: the label maps, the splits' invariants, turn bookkeeping, the dialogue state)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from empathic_agent.encode.text import TextContext, context_state_features
from empathic_agent.encode.text_model import CONTEXT_STATE_FEATURES
from empathic_agent.latent import CATEGORIES, Reading
from empathic_agent.training import text_context as tc
from empathic_agent.training.evaluate import read_eval_csv

ED_LABELS = ("afraid angry annoyed anticipating anxious apprehensive ashamed caring confident content devastated "
             "disappointed disgusted embarrassed excited faithful furious grateful guilty hopeful impressed jealous "
             "joyful lonely nostalgic prepared proud sad sentimental surprised terrified trusting").split()


@pytest.mark.parametrize("table", [tc.ED_MAP, tc.ESCONV_MAP])
def test_every_mapped_label_is_a_distribution_over_our_categories(table: dict) -> None:
    for name, dist in table.items():
        assert len(dist) == len(CATEGORIES), name
        assert min(dist) >= 0 and abs(sum(dist) - 1) < 1e-9, name


def test_all_32_empathetic_dialogues_labels_are_mapped() -> None:
    assert sorted(tc.ED_MAP) == sorted(ED_LABELS)


def test_gold_sets_keep_the_shares_of_at_least_the_threshold_largest_first() -> None:
    gold = tc.gold_sets(np.array([tc.ED_MAP["terrified"], tc.ED_MAP["nostalgic"], tc.ED_MAP["embarrassed"]]))
    assert gold[0] == ("fear",)
    assert set(gold[1]) == {"joy", "sadness"}
    assert gold[2] == ("sadness",)  # 0.5 kept; 0.3 and 0.2 are below the threshold


def test_person_turns_are_every_second_turn_back_from_the_one_before_the_reply() -> None:
    assert tc.person_turns(()) == ()
    assert tc.person_turns(("q",)) == ()
    assert tc.person_turns(("p1", "a1")) == ("p1",)
    assert tc.person_turns(("p1", "a1", "p2", "a2")) == ("p1", "p2")


def _write_ed(tmp_path, name: str, conversations: list[list[str]], emotion: str = "sad") -> None:
    folder = tmp_path / "empatheticdialogues"
    folder.mkdir(exist_ok=True)
    with open(folder / name, "w") as fh:
        for conv in conversations:
            for n in range(1, len(conv) + 1, 2):
                fh.write(json.dumps({"emotion": emotion, "context": conv[:n], "n_turns": n}) + "\n")


def test_ed_train_and_dev_split_by_conversation_and_never_share_one(tmp_path) -> None:
    convs = [[f"story {i}", f"reply {i}", f"more {i}"] for i in range(60)]
    _write_ed(tmp_path, "ed_dev_contexts.jsonl", convs)
    train, dev = tc.ed_rows(tmp_path, "train"), tc.ed_rows(tmp_path, "dev")
    assert len(train) + len(dev) == 120 and dev and train
    assert not {r.conversation for r in train} & {r.conversation for r in dev}
    later = [r for r in train if r.turns]
    assert all(r.turns == (r.conversation, r.turns[1]) and r.person == (r.conversation,) for r in later)


def test_esconv_rows_carry_the_turns_before_each_seeker_message(tmp_path) -> None:
    folder = tmp_path / "esconv"
    folder.mkdir()
    dialog = [{"speaker": "sys", "text": "Hi, how can I help?"}, {"speaker": "usr", "text": "Hi"},
              {"speaker": "usr", "text": "I lost my job"}, {"speaker": "sys", "text": "I'm sorry."},
              {"speaker": "usr", "text": "Thanks"}]
    (folder / "train.txt").write_text(json.dumps({"emotion_type": "anxiety", "dialog": dialog}) + "\n")
    rows = tc.esconv_rows(tmp_path, "train")
    assert [r.text for r in rows] == ["Hi", "I lost my job", "Thanks"]
    assert rows[2].turns == ("Hi, how can I help?", "Hi", "I lost my job", "I'm sorry.")
    assert rows[2].person == ("Hi", "I lost my job")
    assert all(r.weight == tc.ESCONV_WEIGHT and r.target == tc.ESCONV_MAP["anxiety"] for r in rows)


def test_the_dialogue_state_is_none_without_earlier_turns_and_follows_them_otherwise() -> None:
    sad = Reading(mean=(-0.6, -0.2, -0.3), variance=(0.02, 0.02, 0.02),
                  categories=(0.02, 0.02, 0.9, 0.02, 0.02, 0.01, 0.01), modality="text")
    states = tc.dialogue_states({"it hurts": sad}, [(), ("it hurts",), ("unknown turn",)])
    assert states[0] is None and states[2] is None
    assert states[1] is not None and states[1].top_category == "sadness" and states[1].mean[0] < -0.3
    assert states[1].variance[0] > 0.02  # carried one turn forward: wider


def test_context_state_features_have_the_heads_size_and_flags() -> None:
    assert context_state_features(None).shape == (CONTEXT_STATE_FEATURES,)
    assert not context_state_features(None).any()
    f = context_state_features(TextContext(("hello",), None))
    assert f[0] == 1 and f[1] == 0
    r = Reading(mean=(0.5, 0.1, 0.0), variance=(0.1, 0.1, 0.1), categories=(0, 1, 0, 0, 0, 0, 0), modality="fused")
    f = context_state_features(TextContext((), r))
    assert f[0] == 0 and f[1] == 1 and f[3] == 0.5 and f[7] == 1


def test_text_context_drops_blank_turns_and_reads_the_last_ones() -> None:
    c = TextContext(("a", "  ", "b", "c"))
    assert c.turns == ("a", "b", "c")
    assert c.text(2) == "b c" and c.text(0) == ""
    with pytest.raises(TypeError):
        TextContext(("a",), state="sad")  # type: ignore[arg-type]


def test_an_eval_csv_context_column_gives_each_row_its_turns(tmp_path) -> None:
    path = tmp_path / "conv.csv"
    path.write_text('context,text,emotion\n"My cat died.\nI\'m so sorry.",I miss her,sadness\n,Hello,neutral\n')
    es = read_eval_csv(path)
    assert es.contexts == [("My cat died.", "I'm so sorry."), ()]
    assert read_eval_csv(tmp_path.joinpath("conv.csv")).inputs == ["I miss her", "Hello"]


def test_the_handmade_conversation_set_is_a_valid_eval_csv() -> None:
    from pathlib import Path

    es = read_eval_csv(Path(__file__).resolve().parents[1] / "data" / "conversation_emotion_handmade.csv")
    assert len(es) == 98 and es.contexts is not None
    assert sum(bool(c) for c in es.contexts) > 60
    assert {g[0] for g in es.emotions} == set(CATEGORIES)
