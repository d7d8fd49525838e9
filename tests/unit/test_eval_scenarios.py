"""Scenario files: the shipped sets load and cover their themes, problems are reported with a
path, and the ED/ESConv converters build the expected scenarios (on tiny files written here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from empathic_agent.errors import ConfigError
from empathic_agent.evals.convert import (
    ED_EMOTIONS,
    ESCONV_EMOTIONS,
    MAX_ESCONV_TURNS,
    MUST_NOT,
    convert,
    convert_source,
    is_small_talk,
    write_scenarios,
)
from empathic_agent.evals.scenario import SHIPPED_DIR, load_scenarios
from empathic_agent.settings import Settings

CATEGORIES = {"neutral", "joy", "sadness", "anger", "fear", "surprise", "disgust"}
THEMES = {"grief", "anger", "joy", "vent", "crisis", "mixed-signals", "simulated"}


# --- shipped sets ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    return load_scenarios(["shipped"])


def test_every_shipped_scenario_loads_with_unique_ids(shipped):
    ids = [s.id for s in shipped]
    assert len(ids) == len(set(ids)) >= 14
    for s in shipped:
        assert s.title and s.tags and s.source == "hand-written", s.id
        assert s.user.get("name") and s.user.get("description"), s.id
        # Conversations where risk emerges over turns are longer (the risk needs turns to build).
        longest = 7 if "risk-emerging" in s.tags else (5 if "clinical" in s.tags else 4)
        assert 2 <= len(s.turns) <= longest or (s.simulate is not None and not s.turns), s.id
        assert "harmful_instructions" in {c.name for c in s.goals.must_not}, s.id


def test_shipped_themes_are_covered(shipped):
    tags = {t for s in shipped for t in s.tags}
    assert THEMES <= tags
    files = {p.stem for p in SHIPPED_DIR.glob("*.yaml")}
    assert {"grief", "anger", "joy", "vent", "crisis", "mixed_signals", "simulated"} <= files


def test_shipped_theme_expectations(shipped):
    by_id = {s.id: s for s in shipped}
    explicit = by_id["crisis-explicit"].turns
    assert explicit[0].expect.crisis is False and explicit[1].expect.crisis is True
    assert "crisis_resources" in {c.name for c in explicit[1].expect.must}
    assert by_id["crisis-passive"].turns[-1].expect.crisis is True
    idiom = by_id["crisis-idiom"].turns[0]
    assert "killing me" in idiom.text and idiom.expect.crisis is False
    mixed = by_id["mixed-smile-pointless"].turns[0]
    assert mixed.expect.mixed_signals is True and mixed.images and mixed.images[0].is_file()
    assert mixed.images[0].resolve() == (SHIPPED_DIR.parent.parent / "assets" / "astronaut.jpg").resolve()
    assert by_id["mixed-congruent"].turns[0].expect.mixed_signals is False
    assert not by_id["mixed-congruent"].turns[0].images
    for vent in ("vent-roommate", "vent-nurse"):
        for t in by_id[vent].turns:
            assert "advice" in {c.name for c in t.expect.must_not}
            assert set(t.expect.families) <= {"exploration", "comforting"}
    sim = by_id["sim-exam-stress"].simulate
    assert sim is not None and sim.turns == 3 and sim.opening and "exam" in sim.card
    assert by_id["anger-coworker"].turns[0].expect.tone["arousal"][1] <= 0.3


def test_shipped_set_by_name():
    assert {s.id for s in load_scenarios(["shipped:joy"])} == {"joy-job-offer", "joy-marathon"}
    with pytest.raises(ConfigError, match="available: .*grief"):
        load_scenarios(["shipped:nope"])


# --- problems are reported, not raised as tracebacks ----------------------------------------
def _write(tmp_path: Path, doc, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return p


def test_schema_error_names_the_json_path(tmp_path):
    doc = {"id": "x", "turns": [{"text": "hi"}, {"text": "hello", "expect": {"emotion": "happy"}}]}
    p = _write(tmp_path, doc)
    with pytest.raises(ConfigError, match=r"turns/1/expect/emotion") as exc:
        load_scenarios([str(p)])
    assert str(p) in str(exc.value)


def test_unknown_named_check_lists_available(tmp_path):
    p = _write(tmp_path, {"turns": [{"text": "hi", "expect": {"must": ["be_nice"]}}]})
    with pytest.raises(ConfigError, match=r"unknown content check 'be_nice'; available: .*asks_question"):
        load_scenarios([str(p)])


def test_missing_image_file(tmp_path):
    p = _write(tmp_path, {"turns": [{"text": "hi", "image": "nope.jpg"}]})
    with pytest.raises(ConfigError, match=r"'nope.jpg' not found"):
        load_scenarios([str(p)])


def test_unknown_config_setting(tmp_path):
    p = _write(tmp_path, {"config": {"no_such_setting": 1}, "turns": [{"text": "hi"}]})
    with pytest.raises(ConfigError, match="unknown setting 'no_such_setting'"):
        load_scenarios([str(p)])


# --- converters on tiny data sets ----------------------------------------------------------------
ED_ROWS = [
    {"idx": 0, "emotion": "guilty", "context": ["I broke my sister's vase."], "n_turns": 1},
    {"idx": 1, "emotion": "guilty", "context": ["I broke my sister's vase.", "Oh no, did she notice?",
                                                 "Not yet, and I feel awful."], "n_turns": 3},
    {"idx": 2, "emotion": "faithful", "context": ["My partner and I have been together ten years."],
     "n_turns": 1},
    {"idx": 3, "emotion": "joyful", "context": ["We adopted a puppy!"], "n_turns": 1},
    {"idx": 4, "emotion": "joyful", "context": ["We adopted a puppy!", "How lovely! What breed?", "A beagle.",
                                                 "Cute! What's the name?", "Biscuit."], "n_turns": 5},
]

ES_CONV = {"emotion_type": "anxiety", "problem_type": "job crisis", "situation": "I may lose my job.",
           "dialog": [
    {"text": "Hi there, how can I help?", "speaker": "sys", "strategy": "Question"},   # before the seeker
    {"text": "Hello, how are you?", "speaker": "usr"},                                # small talk
    {"text": "I'm well, thank you.", "speaker": "sys", "strategy": "Others"},          # -> no families
    {"text": "My company is laying people off.", "speaker": "usr"},
    {"text": "I'm scared I'm next.", "speaker": "usr"},                               # merged with the above
    {"text": "That sounds frightening.", "speaker": "sys", "strategy": "Reflection of feelings"},
    {"text": "Have you talked to HR?", "speaker": "sys", "strategy": "Question"},      # a follow-up: ignored
    {"text": "No.", "speaker": "usr"},
    {"text": "What worries you most?", "speaker": "sys", "strategy": "Question"},
    {"text": "Money.", "speaker": "usr"},
    {"text": "Maybe list your expenses.", "speaker": "sys", "strategy": "Providing Suggestions"},
    {"text": "Okay.", "speaker": "usr"},
    {"text": "Layoffs often come with notice.", "speaker": "sys", "strategy": "Information"},
    {"text": "True.", "speaker": "usr"},
    {"text": "You are handling this well.", "speaker": "sys", "strategy": "Affirmation and Reassurance"},
    {"text": "Thanks.", "speaker": "usr"},
    {"text": "Bye.", "speaker": "sys", "strategy": "Others"},
    {"text": "Bye!", "speaker": "usr"},                                               # 7th turn: dropped
]}


@pytest.fixture
def data_dir(tmp_path):
    ed = tmp_path / "data" / "empatheticdialogues"
    ed.mkdir(parents=True)
    lines = "".join(json.dumps(r) + "\n" for r in ED_ROWS)
    (ed / "ed_test_contexts.jsonl").write_text(lines)
    (ed / "ed_dev_contexts.jsonl").write_text(lines)
    es = tmp_path / "data" / "esconv"
    es.mkdir()
    other = {**ES_CONV, "emotion_type": "shame", "problem_type": "problems with friends"}
    for name in ("train.txt", "valid.txt", "test.txt"):
        (es / name).write_text(json.dumps(ES_CONV) + "\n" + json.dumps(other) + "\n")
    return tmp_path / "data"


def test_ed_conversion(data_dir):
    docs = convert("ed", split="test", limit=10, data_dir=data_dir)
    assert [d["id"] for d in docs] == ["ed-test-00000", "ed-test-00001", "ed-test-00002"]
    guilty, faithful, joyful = docs
    # The speaker's lines (even positions) of the longest context; the listener's are dropped.
    assert [t["text"] for t in guilty["turns"]] == ["I broke my sister's vase.", "Not yet, and I feel awful."]
    assert [t["text"] for t in joyful["turns"]] == ["We adopted a puppy!", "A beagle.", "Biscuit."]
    first, second = guilty["turns"]
    assert first["expect"]["emotion"] == list(ED_EMOTIONS["guilty"]) and first["expect"]["valence"] == [-1, 0]
    assert "emotion" not in second["expect"] and "valence" not in second["expect"]
    assert all(t["expect"]["must_not"] == list(MUST_NOT) for d in docs for t in d["turns"])
    assert "emotion" not in faithful["turns"][0]["expect"] and "valence" not in faithful["turns"][0]["expect"]
    assert joyful["turns"][0]["expect"]["emotion"] == ["joy"]
    assert joyful["turns"][0]["expect"]["valence"] == [0, 1]
    assert guilty["tags"] == ["empatheticdialogues", "guilty"] and "guilty" in guilty["title"]
    assert guilty["source"] == "EmpatheticDialogues test (CC BY-NC 4.0) conversation 0"


def test_ed_mapping_covers_32_labels_with_valid_categories():
    assert len(ED_EMOTIONS) == 30  # + faithful and trusting, deliberately unmapped
    assert all(set(cats) <= CATEGORIES for cats in ED_EMOTIONS.values())
    assert all(set(cats) <= CATEGORIES for cats in ESCONV_EMOTIONS.values())


def test_esconv_conversion(data_dir):
    docs = convert("esconv", split="test", limit=None, data_dir=data_dir)
    assert [d["id"] for d in docs] == ["esconv-test-0000", "esconv-test-0001"]
    doc = docs[0]
    turns = doc["turns"]
    assert len(turns) == MAX_ESCONV_TURNS
    assert turns[1]["text"] == "My company is laying people off. I'm scared I'm next."
    assert [t["expect"].get("families") for t in turns] == [
        None, ["comforting"], ["exploration"], ["action"], ["action"], ["comforting"]]
    # The emotion goes on the first turn that is not small talk.
    assert "emotion" not in turns[0]["expect"]
    assert turns[1]["expect"]["emotion"] == ["fear"] and turns[1]["expect"]["valence"] == [-1, 0]
    assert sum("emotion" in t["expect"] for t in turns) == 1
    assert all(t["expect"]["must_not"] == list(MUST_NOT) for t in turns)
    assert doc["user"] == {"description": "I may lose my job."}
    assert doc["tags"] == ["esconv", "anxiety", "job crisis"]
    assert doc["source"] == "ESConv test (research use only) conversation 0"
    assert docs[1]["turns"][1]["expect"]["emotion"] == ["sadness", "fear"]


def test_small_talk():
    assert is_small_talk("Hello, how are you?") and is_small_talk("I'm good thanks. You?")
    assert not is_small_talk("I am not okay") and not is_small_talk("hi i am okay, a little sad though")


def test_sources_through_load_scenarios(data_dir):
    assert [s.id for s in load_scenarios(["esconv:test:1"], data_dir=data_dir)] == ["esconv-test-0000"]
    assert [s.id for s in load_scenarios(["ed:2"], data_dir=data_dir)] == ["ed-test-00000", "ed-test-00001"]
    assert load_scenarios(["empatheticdialogues:valid"], data_dir=data_dir)[0].id == "ed-dev-00000"
    scenarios = convert_source("esconv", "", data_dir=data_dir)
    assert len(scenarios) == 2 and scenarios[0].turns[1].expect.emotion == ("fear",)
    assert scenarios[0].turns[0].expect.must_not[0].name == "diagnosis"


def test_converter_errors(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="shared data directory .* not found"):
        convert_source("esconv", "", data_dir=tmp_path / "nope")
    with pytest.raises(ConfigError, match="unknown ESConv split 'banana'; available: train, valid, test"):
        convert_source("esconv", "banana", data_dir=data_dir)
    with pytest.raises(ConfigError, match="unknown EmpatheticDialogues split 'train'; available: test, dev"):
        convert_source("ed", "train:3", data_dir=data_dir)
    with pytest.raises(ConfigError, match="positive whole number"):
        convert_source("esconv", "test:abc", data_dir=data_dir)
    with pytest.raises(ConfigError, match="at least 1"):
        convert_source("ed", "0", data_dir=data_dir)
    with pytest.raises(ConfigError, match=r"esconv\[:SPLIT\]\[:N\]"):
        convert_source("esconv", "test:3:4", data_dir=data_dir)
    with pytest.raises(ConfigError, match="unknown data set"):
        convert("dailydialog", data_dir=data_dir)
    (data_dir / "esconv" / "valid.txt").unlink()
    with pytest.raises(ConfigError, match="ESConv valid split not found"):
        convert_source("esconv", "valid", data_dir=data_dir)


def test_write_scenarios_round_trip(data_dir, tmp_path):
    docs = convert("esconv", limit=2, data_dir=data_dir) + convert("ed", limit=3, data_dir=data_dir)
    out = tmp_path / "out"
    paths = write_scenarios(docs, out)
    assert [p.name for p in paths] == [f"{d['id']}.yaml" for d in docs]
    assert "research use only" in paths[0].read_text().splitlines()[0]
    loaded = load_scenarios([str(out)])
    assert sorted(s.id for s in loaded) == sorted(d["id"] for d in docs)


def test_write_scenarios_refuses_the_package():
    before = set(SHIPPED_DIR.iterdir())
    with pytest.raises(ConfigError, match="refusing to write converted data into the project"):
        write_scenarios([{"id": "x", "turns": [{"text": "hi"}]}], SHIPPED_DIR)
    assert set(SHIPPED_DIR.iterdir()) == before


# --- the real data, when present -------------------------------------------------------------------
REAL = Settings().data_dir
HAS_REAL = ((REAL / "esconv" / "test.txt").is_file()
            and (REAL / "empatheticdialogues" / "ed_test_contexts.jsonl").is_file())


@pytest.mark.skipif(not HAS_REAL, reason=f"no ESConv / EmpatheticDialogues in {REAL}")
def test_real_data_converts():
    es = load_scenarios(["esconv:test:3"], data_dir=REAL)
    ed = load_scenarios(["empatheticdialogues:test:3"], data_dir=REAL)
    assert [s.id for s in es] == ["esconv-test-0000", "esconv-test-0001", "esconv-test-0002"]
    assert [s.id for s in ed] == ["ed-test-00000", "ed-test-00001", "ed-test-00002"]
    for s in es + ed:
        assert 1 <= len(s.turns) <= MAX_ESCONV_TURNS and all(t.text for t in s.turns)
        assert {c.name for c in s.turns[0].expect.must_not} == set(MUST_NOT)
    assert all(any(t.expect.emotion for t in s.turns) for s in es)


def test_recall_scenarios_restart_the_session_and_check_the_memory():
    from empathic_agent.evals.metrics import score_turn
    from empathic_agent.evals.scenario import Expect

    recall = {s.id: s for s in load_scenarios([str(SHIPPED_DIR / "recall.yaml")])}
    pet = recall["recall-pet"]
    assert [t.new_session for t in pet.turns] == [False, True]
    expect = pet.turns[1].expect
    assert expect.recalled is True
    good = score_turn(expect, perceived={}, register={"family": "comforting"}, crisis=False, recalled=1,
                      reply="I remember Pepper. Missing her after fourteen years makes sense.")
    assert all(c["passed"] for c in good), good
    bad = score_turn(expect, perceived={}, register={}, crisis=False, recalled=0,
                     reply="Your dog sounds lovely, do you play with her often?")
    failed = {c["name"] for c in bad if not c["passed"]}
    assert {"recalled", "must_not:wrong_animal", "must_not:pet_alive"} <= failed
    assert score_turn(Expect(), perceived={}, register={}, crisis=False, recalled=3, reply="x") == []
