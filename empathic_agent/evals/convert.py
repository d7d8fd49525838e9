"""Turn public dialogue data sets into evaluation scenarios (at run time, never into the project).

    load_scenarios(["esconv:test:20"])          # a scenario source: converted in memory, at run time
    empathic eval convert esconv --split test --limit 20 --out /tmp/esconv-scenarios   # YAML files

Licences — why nothing converted is ever written into the project or shipped with the package:

* **EmpatheticDialogues** (Rashkin et al., ACL 2019): CC BY-NC 4.0 (non-commercial, attribution).
* **ESConv** (Liu et al., ACL 2021): "for academic research use only" (CoAI Group, Tsinghua University).

Both are read from the shared data directory (``Settings.data_dir``; ``EMPATHIC_DATA_DIR``) when a
run starts.  :func:`write_scenarios` writes only into a folder the user names, refuses the package
folder and the rest of the source checkout (except its git-ignored ``artifacts/`` and ``.cache/``),
and heads every file with its source and licence.  The shipped scenarios in ``evals/scenarios/``
are original hand-written text.

**EmpatheticDialogues** (``empatheticdialogues/ed_{test,dev}_contexts.jsonl``): each line is one
*prefix* of a conversation (1, 3, 5 or 7 utterances, alternating speaker/listener, starting and
ending with the speaker); a conversation's prefixes are consecutive lines, the first with
``n_turns == 1``, each later one extending the previous.  Per conversation the longest prefix is
kept; the speaker's utterances (even positions) become the user turns — the listener's lines are
dropped because the agent replies instead.  The conversation's emotion label (chosen by the speaker)
becomes an expectation on the *first* turn only (it states the situation; later turns drift), as
a set of acceptable categories (:data:`ED_EMOTIONS`) plus a valence range for the clearly positive
or negative labels (:data:`ED_VALENCE`).

**ESConv** (``esconv/{train,valid,test}.txt``, one JSON conversation per line): consecutive seeker
(``usr``) utterances are merged into one user turn, at most :data:`MAX_ESCONV_TURNS` are kept.  Each
turn expects the strategy family of the human supporter's next labelled strategy (none for
"Others", which is small talk).  The conversation's ``emotion_type`` (:data:`ESCONV_EMOTIONS`) and
a negative valence are expected on the first user turn that is not small talk: about half of the
seekers open with "Hi, how are you?", which carries no emotion to recognise.

Every converted turn forbids diagnosing, blaming and harmful instructions (:data:`MUST_NOT`).
Conversation numbers (``conversation N``, ids ``ed-test-00012``/``esconv-test-0007``) count from
0 in file order, so a scenario can be traced back to its source line(s).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final, Iterable, Mapping, Sequence

from empathic_agent.errors import ConfigError
from empathic_agent.evals.scenario import Scenario, parse_scenario

__all__ = [
    "DEFAULT_LIMIT", "ED_EMOTIONS", "ED_VALENCE", "ESCONV_EMOTIONS", "KINDS", "MAX_ESCONV_TURNS", "MUST_NOT",
    "YAML_WIDTH", "convert", "convert_source", "ed_conversations", "esconv_user_turns", "is_small_talk",
    "write_scenarios",
]

#: Conversations converted when a source names no N.
DEFAULT_LIMIT: Final[int] = 10
#: Source names (as in ``load_scenarios``) -> the canonical data set.
KINDS: Final[dict[str, str]] = {"empatheticdialogues": "empatheticdialogues", "ed": "empatheticdialogues",
                                "esconv": "esconv"}
#: Files per split, and the split used when none is named.
ED_SPLIT_FILES: Final[dict[str, str]] = {"test": "ed_test_contexts.jsonl", "dev": "ed_dev_contexts.jsonl"}
ESCONV_SPLIT_FILES: Final[dict[str, str]] = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}
DEFAULT_SPLIT: Final[dict[str, str]] = {"empatheticdialogues": "test", "esconv": "test"}
#: The two data sets name their validation split differently; accept either name for both.
SPLIT_ALIASES: Final[dict[str, dict[str, str]]] = {
    "empatheticdialogues": {"valid": "dev", "validation": "dev"},
    "esconv": {"dev": "valid", "validation": "valid"},
}
#: Word for "every conversation of the split" in place of N.
ALL: Final[str] = "all"

#: Forbidden on every converted turn: failures no supporter reply may show, whatever the context.
MUST_NOT: Final[tuple[str, ...]] = ("diagnosis", "blame", "harmful_instructions")
#: Seeker turns kept per ESConv conversation (they run to ~15; the opening phase is what is
#: comparable across conversations, and a long scripted run ignores the agent's replies anyway).
MAX_ESCONV_TURNS: Final[int] = 6

#: EmpatheticDialogues' 32 labels -> acceptable categories of our 7.  Where GoEmotions' official
#: Ekman mapping covers the same word it is followed (caring, disappointment, embarrassment,
#: remorse ~ guilt, excitement, gratitude, pride, optimism ~ hope, admiration ~ impressed); a
#: second category is accepted where ED's situations commonly read as it (an annoying situation is
#: often told as disgust; shame and guilt come with worry; a surprise is as often pleasant, or
#: startling); neutral is accepted for the mild states that people often report flatly ("I have
#: all the kids' things ready").  Bittersweet labels (sentimental, nostalgic) accept joy and
#: sadness.  ``faithful`` and ``trusting`` describe a stance, not a feeling: no expectation.
ED_EMOTIONS: Final[dict[str, tuple[str, ...]]] = {
    # fear
    "afraid": ("fear",), "terrified": ("fear",), "anxious": ("fear",), "apprehensive": ("fear",),
    # anger
    "angry": ("anger",), "furious": ("anger",), "annoyed": ("anger", "disgust"),
    "jealous": ("anger", "sadness"),
    # disgust
    "disgusted": ("disgust", "anger"),
    # sadness
    "sad": ("sadness",), "lonely": ("sadness",), "devastated": ("sadness",),
    "disappointed": ("sadness", "anger"), "embarrassed": ("sadness", "fear"), "ashamed": ("sadness", "fear"),
    "guilty": ("sadness", "fear"),
    # joy
    "joyful": ("joy",), "excited": ("joy", "surprise"), "proud": ("joy",), "grateful": ("joy",),
    "impressed": ("joy", "surprise"), "content": ("joy", "neutral"), "confident": ("joy", "neutral"),
    "hopeful": ("joy", "neutral"), "prepared": ("joy", "neutral"),
    # surprise
    "surprised": ("surprise", "joy", "fear"),
    # mixed or bittersweet
    "sentimental": ("joy", "sadness", "neutral"), "nostalgic": ("joy", "sadness", "neutral"),
    "caring": ("joy", "sadness", "neutral"), "anticipating": ("joy", "fear", "neutral"),
    # "faithful", "trusting": no defensible category
}
POSITIVE: Final[tuple[float, float]] = (0.0, 1.0)
NEGATIVE: Final[tuple[float, float]] = (-1.0, 0.0)
#: Valence ranges only for labels whose sign is not in doubt (hope, preparedness, anticipation,
#: surprise and the bittersweet ones can go either way, so they get none).
ED_VALENCE: Final[dict[str, tuple[float, float]]] = {
    **{k: POSITIVE for k in ("joyful", "excited", "proud", "grateful", "impressed", "content", "confident")},
    **{k: NEGATIVE for k in ("afraid", "terrified", "anxious", "apprehensive", "angry", "furious", "annoyed",
                             "jealous", "disgusted", "sad", "lonely", "devastated", "disappointed",
                             "embarrassed", "ashamed", "guilty")},
}

#: ESConv's 11 emotion types -> acceptable categories (consistent with ED's labels above:
#: anxiety and nervousness are fear; depression, pain are sadness; shame and guilt accept fear too,
#: jealousy accepts sadness, disgust accepts anger).  All are negative: valence [-1, 0].
ESCONV_EMOTIONS: Final[dict[str, tuple[str, ...]]] = {
    "anxiety": ("fear",), "nervousness": ("fear",), "fear": ("fear",),
    "depression": ("sadness",), "sadness": ("sadness",), "pain": ("sadness",),
    "anger": ("anger",), "disgust": ("disgust", "anger"), "jealousy": ("anger", "sadness"),
    "shame": ("sadness", "fear"), "guilt": ("sadness", "fear"),
}
#: Words of greetings and pleasantries: a seeker turn made only of these is small talk ("Hi, how
#: are you?", "I'm good thanks, you?") and gets no emotion expectation.  "not", "bad", "down"
#: are deliberately absent ("I am not okay" is not small talk).
SMALL_TALK_WORDS: Final[frozenset[str]] = frozenset(
    "hi hello hey hai hiya heya hii yo evening morning afternoon day night good great fine ok okay alright "
    "well thanks thank thx you your yourself how how's hows are is it its it's doing going goes today there "
    "anyone anybody someone somebody online home here what about things and too so far i i'm im iam am me "
    "nice to meet hope friend sure yes yeah yep very pretty really right now".split())
_WORD = re.compile(r"[a-z']+")

#: Licence notes for sources and file headers.
LICENCES: Final[dict[str, str]] = {"empatheticdialogues": "CC BY-NC 4.0", "esconv": "research use only"}
NAMES: Final[dict[str, str]] = {"empatheticdialogues": "EmpatheticDialogues", "esconv": "ESConv"}
#: Folders of a source checkout that are git-ignored and may hold converted data.
IGNORED_DIRS: Final[tuple[str, ...]] = ("artifacts", ".cache")
#: Line width of written files (flow-style lists keep short expectations on one line).
YAML_WIDTH: Final[int] = 100


# ---------------------------------------------------------------------------------------------
def _kind(kind: str) -> str:
    try:
        return KINDS[kind.lower()]
    except KeyError:
        raise ConfigError(f"unknown data set {kind!r} to convert; choose one of {', '.join(KINDS)}") from None


def _split(kind: str, split: str | None) -> str:
    files = ED_SPLIT_FILES if kind == "empatheticdialogues" else ESCONV_SPLIT_FILES
    split = (split or DEFAULT_SPLIT[kind]).lower()
    split = SPLIT_ALIASES[kind].get(split, split)
    if split not in files:
        raise ConfigError(f"unknown {NAMES[kind]} split {split!r}; available: {', '.join(files)}")
    return split


def _limit(value: int | str | None) -> int | None:
    """N conversations (None: all).  Accepts an int, a numeric string or 'all'."""
    if value is None or (isinstance(value, str) and value.lower() == ALL):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"number of conversations must be a positive whole number or {ALL!r}, "
                          f"not {value!r}") from None
    if n < 1:
        raise ConfigError(f"number of conversations must be at least 1, not {n}")
    return n


def _data_file(kind: str, split: str, data_dir: Path | str | None) -> Path:
    if data_dir is None:
        from empathic_agent.settings import Settings

        data_dir = Settings.from_env().data_dir
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(f"shared data directory {root} not found; set EMPATHIC_DATA_DIR or pass --data-dir "
                          f"(it holds empatheticdialogues/ and esconv/)")
    files = ED_SPLIT_FILES if kind == "empatheticdialogues" else ESCONV_SPLIT_FILES
    path = root / kind / files[split]
    if not path.is_file():
        raise ConfigError(f"{NAMES[kind]} {split} split not found at {path}; "
                          f"is {root} the shared data directory?")
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}, line {i}: not valid JSON: {exc}") from None
    return rows


def _must_not() -> list[str]:
    return list(MUST_NOT)  # a fresh list per turn: YAML anchors/aliases would make files hard to read


# --- EmpatheticDialogues ---------------------------------------------------------------------
def ed_conversations(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group ED context rows into conversations; each keeps its longest context and label.

    A row starts a new conversation when ``n_turns`` is 1 or its context does not extend the
    previous row's (the files are in order, so a conversation's prefixes are consecutive).
    """
    convs: list[dict[str, Any]] = []
    for row in rows:
        context = [str(u) for u in row.get("context") or ()]
        if not context:
            continue
        last = convs[-1] if convs else None
        extends = (last is not None and int(row.get("n_turns", len(context))) > 1
                   and len(context) > len(last["context"])
                   and context[: len(last["context"])] == last["context"])
        if extends:
            last["context"] = context
        else:
            convs.append({"emotion": str(row.get("emotion", "")), "context": context})
    return convs


def _ed_document(conv: Mapping[str, Any], split: str, number: int) -> dict[str, Any] | None:
    label = conv["emotion"]
    # Even positions are the speaker (the person); odd ones the listener, whom the agent replaces.
    texts = [u.strip() for u in conv["context"][0::2] if u.strip()]
    if not texts:
        return None
    turns: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        expect: dict[str, Any] = {}
        if i == 0:
            if label in ED_EMOTIONS:
                expect["emotion"] = list(ED_EMOTIONS[label])
            if label in ED_VALENCE:
                expect["valence"] = list(ED_VALENCE[label])
        expect["must_not"] = _must_not()
        turns.append({"text": text, "expect": expect})
    return {
        "id": f"ed-{split}-{number:05d}",
        "title": f"EmpatheticDialogues: {label or 'conversation'}",
        "tags": ["empatheticdialogues"] + ([label] if label else []),
        "source": f"EmpatheticDialogues {split} ({LICENCES['empatheticdialogues']}) conversation {number}",
        "user": {"description": f"Someone telling a listener about a time they felt {label or 'something'}."},
        "turns": turns,
    }


# --- ESConv -------------------------------------------------------------------------------------
def is_small_talk(text: str) -> bool:
    """A greeting or pleasantry only ("Hello?", "I'm fine thanks, how are you?")."""
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    return all(w in SMALL_TALK_WORDS for w in words)


def esconv_user_turns(dialog: Sequence[Mapping[str, Any]]) -> list[tuple[str, str | None]]:
    """(merged seeker words, the supporter's next labelled strategy or None) per seeker turn."""
    turns: list[list[Any]] = []  # [words, strategy]
    last_speaker = None
    awaiting = False  # the latest seeker turn has not been answered by a labelled supporter turn yet
    for utt in dialog:
        speaker, text = utt.get("speaker"), str(utt.get("text") or "").strip()
        if speaker == "usr":
            if not text:
                continue
            if last_speaker == "usr":
                turns[-1][0] += " " + text
            else:
                turns.append([text, None])
            awaiting = True
        elif speaker == "sys":
            # The first labelled supporter turn after the seeker's words answers them; further
            # supporter turns before the seeker speaks again are follow-ups, not the answer.
            if awaiting and utt.get("strategy"):
                turns[-1][1] = str(utt["strategy"])
                awaiting = False
        else:
            continue
        last_speaker = speaker
    return [(t[0], t[1]) for t in turns]


def _esconv_document(conv: Mapping[str, Any], split: str, number: int) -> dict[str, Any] | None:
    from empathic_agent.plan.register import STRATEGY_FAMILY, family_of

    emotion = str(conv.get("emotion_type") or "")
    problem = str(conv.get("problem_type") or "")
    user_turns = esconv_user_turns(conv.get("dialog") or ())[:MAX_ESCONV_TURNS]
    if not user_turns:
        return None
    first_real = next((i for i, (text, _) in enumerate(user_turns) if not is_small_talk(text)), None)
    turns: list[dict[str, Any]] = []
    for i, (text, strategy) in enumerate(user_turns):
        expect: dict[str, Any] = {}
        if i == first_real and emotion in ESCONV_EMOTIONS:
            expect["emotion"] = list(ESCONV_EMOTIONS[emotion])
            expect["valence"] = list(NEGATIVE)
        # "Others" is small talk (greetings, thanks): no strategy expectation; an unknown label neither.
        if strategy in STRATEGY_FAMILY and family_of(strategy) != "other":
            expect["families"] = [family_of(strategy)]
        expect["must_not"] = _must_not()
        turns.append({"text": text, "expect": expect})
    doc: dict[str, Any] = {
        "id": f"esconv-{split}-{number:04d}",
        "title": f"{problem[:1].upper() + problem[1:] or 'ESConv conversation'}"
                 + (f" ({emotion})" if emotion else ""),
        "tags": ["esconv"] + [t for t in (emotion, problem) if t],
        "source": f"ESConv {split} ({LICENCES['esconv']}) conversation {number}",
        "turns": turns,
    }
    situation = str(conv.get("situation") or "").strip()
    if situation:
        doc["user"] = {"description": situation}
    return doc


def _documents(rows: Any, build: Any, split: str, limit: int | None) -> list[dict[str, Any]]:
    """``build(row, split, number)`` for each conversation until ``limit`` documents (None: skipped)."""
    docs = []
    for number, conv in enumerate(rows):
        if limit is not None and len(docs) >= limit:
            break
        doc = build(conv, split, number)
        if doc is not None:
            docs.append(doc)
    return docs


# --- public API -------------------------------------------------------------------------------
def _convert(kind: str, split: str | None, limit: int | str | None,
             data_dir: Path | str | None) -> list[tuple[dict[str, Any], Scenario]]:
    kind = _kind(kind)
    split = _split(kind, split)
    n = _limit(limit)
    path = _data_file(kind, split, data_dir)
    rows = _read_jsonl(path)
    docs = (_documents(ed_conversations(rows), _ed_document, split, n) if kind == "empatheticdialogues"
            else _documents(rows, _esconv_document, split, n))
    if not docs:
        raise ConfigError(f"{path}: no conversations to convert")
    # Validate every document exactly as a scenario file would be (schema, named checks).
    return [(d, parse_scenario(d, default_id=d["id"], where=f"{d['source']} (from {path})")) for d in docs]


def convert(kind: str, *, split: str | None = None, limit: int | str | None = DEFAULT_LIMIT,
            data_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """Scenario documents (plain dicts following the schema) for the first ``limit`` conversations.

    ``kind``: ``empatheticdialogues``/``ed`` or ``esconv``; ``split``: ED ``test``/``dev``, ESConv
    ``train``/``valid``/``test`` (default ``test``); ``limit``: N, or None/'all' for every one;
    ``data_dir``: the shared data directory (default: the ``data_dir`` setting).
    """
    return [doc for doc, _ in _convert(kind, split, limit, data_dir)]


def convert_source(kind: str, rest: str, *, data_dir: Path | str | None = None) -> list[Scenario]:
    """Scenarios for a ``load_scenarios`` source: ``kind`` plus ``rest`` = "SPLIT:N", "SPLIT", "N" or ""."""
    parts = [p.strip() for p in rest.split(":")] if rest.strip() else []
    if len(parts) > 2:
        raise ConfigError(f"bad scenario source '{kind}:{rest}'; write {kind}[:SPLIT][:N], "
                          f"e.g. {kind}:test:20")
    split: str | None = None
    limit: str | int = DEFAULT_LIMIT
    if len(parts) == 2:
        split, limit = parts[0] or None, parts[1] or DEFAULT_LIMIT
    elif len(parts) == 1:
        # One part: a number (or 'all') is N, anything else is the split.
        if parts[0].isdigit() or parts[0].lstrip("-").isdigit() or parts[0].lower() == ALL:
            limit = parts[0]
        else:
            split = parts[0]
    return [scenario for _, scenario in _convert(kind, split, limit, data_dir)]


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _check_out_dir(out: Path) -> None:
    """Converted data must stay out of the package and the source checkout (licences, see above)."""
    from empathic_agent.settings import project_root

    package = Path(__file__).resolve().parent.parent
    root = project_root()
    if _inside(out, package) or (root is not None and _inside(out, root)
                                 and not any(_inside(out, root / d) for d in IGNORED_DIRS)):
        raise ConfigError(f"refusing to write converted data into the project ({out}): the data sets are "
                          f"non-commercial / research-only and must not be committed or shipped; choose a "
                          f"folder outside the checkout (or under its git-ignored {IGNORED_DIRS[0]}/)")


def write_scenarios(docs: Sequence[Mapping[str, Any]], out_dir: Path | str) -> list[Path]:
    """Write one ``<id>.yaml`` per scenario document into ``out_dir`` (created); the paths written."""
    import yaml

    out = Path(out_dir).expanduser().resolve()
    _check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in docs:
        path = out / f"{doc['id']}.yaml"
        header = (f"# {doc.get('source') or 'converted scenario'}\n"
                  "# Converted from a public data set by `empathic eval convert`: keep it out of the project "
                  "repository;\n# mind the data set's licence (EmpatheticDialogues: CC BY-NC 4.0; "
                  "ESConv: academic research use only).\n")
        body = yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, width=YAML_WIDTH,
                              default_flow_style=None)
        path.write_text(header + body, encoding="utf-8")
        paths.append(path)
    return paths
