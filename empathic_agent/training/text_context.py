"""Reading messages in their conversation: data, training and evaluation of the text encoder's
context head (``empathic encoders train text-context``).

The utterance encoder (`training.text`) learned from single sentences (EmoBank, GoEmotions).
People talking to the agent write short turns whose emotion is often only clear from what came
before ("Yeah, I'm doing alright now, but with minor injuries." after a story of a tyre bursting
on a busy road).  The context head (`encode.text_model.ContextHead`) reads the message's
features, the features of the last turns of both sides and the dialogue state, and adds a
correction to the category logits; the conversation domain gets its own calibration.

Data (all in ``../shared/data``; splits fixed before training):

* **EmpatheticDialogues** contexts: every speaker turn with the conversation before it and the
  conversation's emotion (32 labels, chosen by the speaker).  Only ED's dev and test files exist
  here: the dev file is split by conversation (SHA-256 of its first turn, 1 in 5 -> our dev) into
  train and dev; ED's test file is the test set.  Labels map to soft distributions over our seven
  categories (:data:`ED_MAP`).  They are **weak**: the label belongs to the conversation, not to
  each turn.
* **ESConv** seeker turns with their conversation's emotion type (:data:`ESCONV_MAP`), its own
  train / valid / test conversations.  **Weaker still** (greetings and thanks carry the
  conversation's label too), so these rows count :data:`ESCONV_WEIGHT` of an ED row.
* **GoEmotions** comments (Ekman grouping, strong per-message labels, neutral included) paired
  with the context of a *random other* conversation of the same split: a message that says what
  it feels keeps its reading whatever came before, and neutral turns stay neutral.  Without
  these rows every context pushes towards the conversation's emotion.

The dialogue state the head reads is the text-only fused reading of the person's earlier turns
(the graph passes the fused state of all channels); half the training rows drop it, so the head
also works without one.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Final, Sequence

import numpy as np
from numpy.typing import NDArray

from empathic_agent.latent import CATEGORIES, Reading, fuse, temporal_prior
from empathic_agent.training.datasets import DatasetError, goemotions_ekman_split

__all__ = [
    "ED_MAP",
    "ESCONV_MAP",
    "ConvRow",
    "ed_rows",
    "esconv_rows",
    "goemotions_rows",
    "person_turns",
    "dialogue_states",
    "gold_sets",
    "train_context_head",
]

_C = {c: i for i, c in enumerate(CATEGORIES)}


def _dist(**weights: float) -> tuple[float, ...]:
    out = [0.0] * len(CATEGORIES)
    for name, w in weights.items():
        out[_C[name]] = w
    total = sum(out)
    return tuple(w / total for w in out)


#: EmpatheticDialogues' 32 labels -> our categories (soft).  Pure emotions map whole; blends and
#: self-conscious emotions split by their usual valence/arousal (Russell & Mehrabian): shame and
#: guilt are low-valence, low-dominance (sadness, with fear or disgust); nostalgia and
#: sentimentality are bittersweet (joy and sadness); the calm positive states (content, hopeful,
#: confident, caring, trusting, faithful, prepared, anticipating) share joy with neutral, since
#: their turns are often matter-of-fact.
ED_MAP: Final[dict[str, tuple[float, ...]]] = {
    "afraid": _dist(fear=1), "terrified": _dist(fear=1),
    "anxious": _dist(fear=0.8, sadness=0.2), "apprehensive": _dist(fear=0.7, neutral=0.3),
    "angry": _dist(anger=1), "furious": _dist(anger=1),
    "annoyed": _dist(anger=0.8, disgust=0.2), "jealous": _dist(anger=0.6, sadness=0.4),
    "disgusted": _dist(disgust=1),
    "sad": _dist(sadness=1), "devastated": _dist(sadness=1), "lonely": _dist(sadness=1),
    "disappointed": _dist(sadness=0.7, anger=0.3),
    "nostalgic": _dist(sadness=0.5, joy=0.5), "sentimental": _dist(joy=0.5, sadness=0.5),
    "guilty": _dist(sadness=0.7, fear=0.3), "ashamed": _dist(sadness=0.6, disgust=0.4),
    "embarrassed": _dist(sadness=0.5, fear=0.3, surprise=0.2),
    "surprised": _dist(surprise=1), "impressed": _dist(surprise=0.5, joy=0.5),
    "excited": _dist(joy=0.8, surprise=0.2), "joyful": _dist(joy=1), "proud": _dist(joy=1),
    "grateful": _dist(joy=1),
    "content": _dist(joy=0.6, neutral=0.4), "hopeful": _dist(joy=0.7, neutral=0.3),
    "confident": _dist(joy=0.7, neutral=0.3), "caring": _dist(joy=0.5, neutral=0.5),
    "trusting": _dist(neutral=0.6, joy=0.4), "faithful": _dist(neutral=0.6, joy=0.4),
    "prepared": _dist(neutral=0.7, joy=0.3), "anticipating": _dist(joy=0.6, neutral=0.4),
}

#: ESConv's conversation emotion types -> our categories (soft).
ESCONV_MAP: Final[dict[str, tuple[float, ...]]] = {
    "anxiety": _dist(fear=0.8, sadness=0.2), "nervousness": _dist(fear=0.8, neutral=0.2),
    "fear": _dist(fear=1), "depression": _dist(sadness=1), "sadness": _dist(sadness=1),
    "pain": _dist(sadness=0.8, fear=0.2), "anger": _dist(anger=1), "jealousy": _dist(anger=0.6, sadness=0.4),
    "disgust": _dist(disgust=1), "shame": _dist(sadness=0.6, disgust=0.4),
    "guilt": _dist(sadness=0.7, fear=0.3),
}

#: An ESConv seeker turn counts this much of an ED row (its label is the conversation's).
ESCONV_WEIGHT: Final[float] = 0.3
#: A gold category set holds every category with at least this much of the soft label.
GOLD_MIN_SHARE: Final[float] = 0.4
#: ED dev conversations whose first-turn hash falls in 1 of this many buckets form our dev split.
ED_DEV_BUCKETS: Final[int] = 5
#: Turns of context read (both sides): the config's ``context.turns``.
CONTEXT_TURNS: Final[int] = 3
#: Token budget of the context passage (left-truncated).
CONTEXT_MAX_TOKENS: Final[int] = 128


@dataclass(frozen=True)
class ConvRow:
    """One message in its conversation, with a (soft) label."""

    text: str
    turns: tuple[str, ...]          # every earlier turn, oldest first
    person: tuple[str, ...]         # the person's own earlier turns, oldest first
    target: tuple[float, ...]       # soft label over CATEGORIES
    weight: float
    source: str
    conversation: str = ""


def person_turns(turns: Sequence[str]) -> tuple[str, ...]:
    """The person's own earlier turns when turns alternate and the message answers the last one:
    the second-to-last turn, the fourth-to-last, ... (oldest first)."""
    return tuple(turns[-2::-2][::-1])


def gold_sets(targets: NDArray[np.float64]) -> list[tuple[str, ...]]:
    """Soft labels -> gold category sets (categories holding >= GOLD_MIN_SHARE, largest first)."""
    out = []
    for t in targets:
        order = np.argsort(-t)
        out.append(tuple(CATEGORIES[j] for j in order if t[j] >= GOLD_MIN_SHARE) or (CATEGORIES[int(order[0])],))
    return out


def _bucket(key: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big") % buckets


def ed_rows(data_dir: Path | str, split: str) -> list[ConvRow]:
    """EmpatheticDialogues speaker turns: ``train`` / ``dev`` (ED's dev file split by
    conversation) or ``test`` (ED's test file)."""
    name = {"train": "ed_dev_contexts.jsonl", "dev": "ed_dev_contexts.jsonl", "test": "ed_test_contexts.jsonl"}.get(split)
    if name is None:
        raise DatasetError(f"EmpatheticDialogues split must be train, dev or test, not {split!r}")
    path = Path(data_dir) / "empatheticdialogues" / name
    if not path.is_file():
        raise DatasetError(f"EmpatheticDialogues not found at {path}; pass the shared data directory with --data-dir")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            ex = json.loads(line)
            context = [str(t).strip() for t in ex["context"]]
            label = ED_MAP.get(ex["emotion"])
            if label is None:
                raise DatasetError(f"{path}:{n}: unknown ED emotion {ex['emotion']!r}")
            key = context[0]
            if split != "test" and (_bucket(key, ED_DEV_BUCKETS) == 0) != (split == "dev"):
                continue
            turns = tuple(context[:-1])
            rows.append(ConvRow(context[-1], turns, person_turns(turns), label, 1.0, "ed", key))
    return rows


def esconv_rows(data_dir: Path | str, split: str) -> list[ConvRow]:
    """ESConv seeker turns (``train`` / ``dev`` = ESConv valid / ``test``) with their
    conversation's emotion type as a weak label."""
    from empathic_agent.plan.esconv import load_esconv

    convs = load_esconv(data_dir, {"dev": "valid"}.get(split, split))
    rows = []
    for k, conv in enumerate(convs):
        label = ESCONV_MAP.get(str(conv.get("emotion_type", "")).lower())
        if label is None:
            continue
        turns: list[str] = []
        person: list[str] = []
        for t in conv["dialog"]:
            text = str(t.get("text", "")).strip()
            if not text:
                continue
            if t["speaker"] == "usr":
                rows.append(ConvRow(text, tuple(turns), tuple(person), label, ESCONV_WEIGHT, "esconv", f"esconv-{split}-{k}"))
                person.append(text)
            turns.append(text)
    return rows


def goemotions_rows(data_dir: Path | str, split: str, pool: Sequence[ConvRow], n: int, seed: int) -> list[ConvRow]:
    """``n`` GoEmotions comments of ``split`` (strong labels), each given the context of a random
    row of ``pool`` (another conversation)."""
    texts, gold = goemotions_ekman_split(data_dir, split)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    with_context = [r for r in pool if r.turns]
    rows = []
    for i in picks:
        ctx = with_context[int(rng.integers(len(with_context)))]
        target = np.zeros(len(CATEGORIES))
        for c in gold[i]:
            target[_C[c]] += 1.0 / len(gold[i])
        rows.append(ConvRow(texts[i], ctx.turns, ctx.person, tuple(target), 1.0, "goemotions", f"goemotions-{split}-{i}"))
    return rows


def csv_rows(path: Path | str) -> list[ConvRow]:
    """An evaluation CSV with a ``context`` column (``training.evaluate``) as rows with one-hot
    targets (the first listed category)."""
    from empathic_agent.training.evaluate import read_eval_csv

    es = read_eval_csv(path)
    if es.contexts is None:
        raise DatasetError(f"{path} has no 'context' column")
    rows = []
    for text, turns, gold in zip(es.inputs, es.contexts, es.emotions):
        target = np.zeros(len(CATEGORIES))
        target[_C[gold[0]]] = 1.0
        rows.append(ConvRow(str(text), turns, person_turns(turns), tuple(target), 1.0, "handmade", str(path)))
    return rows


def dialogue_states(readings: dict[str, Reading], person: Sequence[Sequence[str]]) -> list[Reading | None]:
    """The dialogue state before each message, text only: the person's earlier turns' readings
    fused turn by turn with the temporal prior (as the graph's encode node does), then carried one
    turn forward (the prior this message is fused with).  None when there is no earlier turn."""
    out: list[Reading | None] = []
    for turns in person:
        state = None
        for t in turns:
            r = readings.get(t)
            if r is None:
                continue
            state = fuse([r], prior=None if state is None else temporal_prior(state)).reading
        out.append(None if state is None else temporal_prior(state))
    return out


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class Features:
    """Cached inputs of the head for a list of rows."""

    utterance: NDArray[np.float32]
    base_logits: NDArray[np.float32]
    context: NDArray[np.float32]
    state: NDArray[np.float32]
    target: NDArray[np.float32]
    weight: NDArray[np.float32]
    source: list[str] = field(default_factory=list)


def extract_features(encoder: Any, rows: Sequence[ConvRow], *, progress: bool = True,
                     drop_state: float = 0.0, seed: int = 0) -> Features:
    """Run the utterance encoder once over every distinct message, context passage and earlier
    person turn of ``rows``."""
    from empathic_agent.encode.text import TextContext, context_state_features

    encoder.load()
    texts = sorted({r.text for r in rows})
    # Only the person's earlier turns need a reading (for the dialogue state).
    earlier = sorted({t for r in rows for t in r.person})
    passages = sorted({" ".join(r.turns[-CONTEXT_TURNS:]) for r in rows if r.turns})

    def chunks(items: list[str], what: str) -> Any:
        parts = [items[i:i + 256] for i in range(0, len(items), 256)]
        if progress:
            from tqdm.auto import tqdm

            return tqdm(parts, desc=what, unit="batch")
        return parts

    feats: dict[str, NDArray[np.float64]] = {}
    logits: dict[str, NDArray[np.float64]] = {}
    readings: dict[str, Reading] = {}
    for part in chunks(texts, "messages"):
        with encoder._lock:
            raw = encoder._forward(part)
        for j, t in enumerate(part):
            feats[t] = raw["features"][j]
            logits[t] = raw["logits"][j]
    for part in chunks(earlier, "earlier turns"):
        readings.update(zip(part, (a.reading for a in encoder.analyze(part))))
    ctx: dict[str, NDArray[np.float64]] = {}
    for part in chunks(passages, "contexts"):
        with encoder._lock:
            out = encoder._context_features(part, CONTEXT_MAX_TOKENS)
        ctx.update(zip(part, out))
    states = dialogue_states(readings, [r.person for r in rows])
    rng = np.random.default_rng(seed)
    dim = next(iter(feats.values())).shape[0]
    zero = np.zeros(dim)
    state_rows = []
    for r, s in zip(rows, states):
        keep = s if rng.random() >= drop_state else None
        state_rows.append(context_state_features(TextContext(r.turns, keep)))
    return Features(
        utterance=np.stack([feats[r.text] for r in rows]).astype(np.float32),
        base_logits=np.stack([logits[r.text] for r in rows]).astype(np.float32),
        context=np.stack([ctx[" ".join(r.turns[-CONTEXT_TURNS:])] if r.turns else zero for r in rows]).astype(np.float32),
        state=np.stack(state_rows).astype(np.float32),
        target=np.array([r.target for r in rows], dtype=np.float32),
        weight=np.array([r.weight for r in rows], dtype=np.float32),
        source=[r.source for r in rows],
    )


def _softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_calibration(logits: NDArray[np.float64], targets: NDArray[np.float64], weights: NDArray[np.float64],
                    base: dict[str, Any]) -> dict[str, Any]:
    """The conversation domain's category calibration, fitted on dev: the logit adjustment tau
    (grid, for dev macro-F1 over the gold sets, as for written text) then the temperature
    (weighted log-loss of the soft labels).  Other entries are copied from ``base``."""
    from empathic_agent.training.evaluate import classification_metrics

    prior = np.asarray(base["category_prior"], dtype=np.float64)
    gold = gold_sets(targets)
    best_tau, best_f1 = 0.0, -1.0
    for tau in (0.0, 0.1, 0.2, 0.3, 0.5):
        pred = [CATEGORIES[j] for j in (logits - tau * np.log(prior)).argmax(axis=1)]
        f1 = classification_metrics(gold, pred)["macro_f1"]
        if f1 > best_f1 + 1e-9:
            best_tau, best_f1 = tau, f1
    adjusted = logits - best_tau * np.log(prior)
    best_t, best_loss = 1.0, math.inf
    for t in np.exp(np.linspace(math.log(0.3), math.log(5.0), 121)):
        p = _softmax(adjusted / t)
        loss = float(-(weights * (targets * np.log(np.clip(p, 1e-9, 1))).sum(axis=1)).sum() / weights.sum())
        if loss < best_loss:
            best_t, best_loss = float(t), loss
    out = dict(base)
    out.update(logit_adjustment=best_tau, temperature=best_t)
    return out


def weak_targets(f: Features, label_share: float, calibration: dict[str, Any]) -> NDArray[np.float32]:
    """Targets of ``f`` with the weak (conversation-level) labels of ED and ESConv rows mixed
    with the utterance encoder's own reading: ``label_share * label + (1 - label_share) *
    reading``.  A turn's emotion is only partly its conversation's: "Which hospital is she in?"
    belongs to a sad conversation but is asked matter-of-factly.  Strong labels stay as they are."""
    prior = np.asarray(calibration["category_prior"], dtype=np.float64)
    teacher = _softmax((f.base_logits.astype(np.float64) - float(calibration["logit_adjustment"]) * np.log(prior))
                       / float(calibration["temperature"]))
    weak = np.array([s in WEAK_SOURCES for s in f.source])[:, None]
    mixed = np.where(weak, label_share * f.target + (1.0 - label_share) * teacher, f.target)
    return mixed.astype(np.float32)


def train_context_head(train: Features, dev: Features, *, epochs: int = 12, lr: float = 1e-3, batch: int = 128,
                       seed: int = 13, width: int = 256, log: Callable[[str], None] = print) -> tuple[Any, list[dict[str, float]]]:
    """Fit the head on ``train``; keep the epoch with the lowest weighted dev log-loss."""
    import copy

    import torch

    from empathic_agent.encode.text_model import ContextHead

    torch.manual_seed(seed)
    head = ContextHead(train.utterance.shape[1], width)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    t = {k: torch.as_tensor(getattr(train, k)) for k in ("utterance", "base_logits", "context", "state", "target", "weight")}
    d = {k: torch.as_tensor(getattr(dev, k)) for k in ("utterance", "base_logits", "context", "state", "target", "weight")}

    def loss_of(h: Any, x: dict[str, Any], idx: Any = None) -> Any:
        sel = (lambda v: v) if idx is None else (lambda v: v[idx])
        z = sel(x["base_logits"]) + h(sel(x["utterance"]), sel(x["context"]), sel(x["state"]))
        ce = -(sel(x["target"]) * torch.log_softmax(z, dim=-1)).sum(-1)
        w = sel(x["weight"])
        return (w * ce).sum() / w.sum()

    history: list[dict[str, float]] = []
    with torch.no_grad():
        best_loss = float(loss_of(head.eval(), d))
    history.append({"epoch": 0, "dev_loss": best_loss})
    best = copy.deepcopy(head.state_dict())
    gen = torch.Generator().manual_seed(seed)
    n = len(train.target)
    for epoch in range(1, epochs + 1):
        head.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            loss = loss_of(head, t, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        head.eval()
        with torch.no_grad():
            dev_loss = float(loss_of(head, d))
        history.append({"epoch": epoch, "train_loss": total / n, "dev_loss": dev_loss})
        log(f"epoch {epoch}: train {total / n:.4f}  dev {dev_loss:.4f}")
        if dev_loss < best_loss:
            best_loss, best = dev_loss, copy.deepcopy(head.state_dict())
    head.load_state_dict(best)
    return head.eval(), history


def head_logits(head: Any, f: Features) -> NDArray[np.float64]:
    import torch

    with torch.no_grad():
        delta = head(torch.as_tensor(f.utterance), torch.as_tensor(f.context), torch.as_tensor(f.state))
    return f.base_logits.astype(np.float64) + delta.double().numpy()



# ---------------------------------------------------------------------------------------------
# The whole run


#: Training rows drawn from each weak or auxiliary source (seeded).
ESCONV_TRAIN_ROWS: Final[int] = 6000
GOEMOTIONS_TRAIN_ROWS: Final[int] = 10000
#: Sources the conversation domain's calibration is fitted on: ESConv's labels are too weak for
#: it (a greeting carries the conversation's "depression"), so it would flatten every reading.
CALIBRATION_SOURCES: Final[tuple[str, ...]] = ("ed", "goemotions")
#: Sources whose labels belong to the conversation, not the turn (see `weak_targets`).
WEAK_SOURCES: Final[tuple[str, ...]] = ("ed", "esconv")
#: Shares of the weak label tried (1.0 = the label alone); chosen on the hand-made dev set.
LABEL_SHARES: Final[tuple[float, ...]] = (0.25, 0.5, 1.0)
#: The hand-made conversational dev set (utterance-level labels in context), for that choice.
HANDMADE_DEV: Final[Path] = Path(__file__).resolve().parents[2] / "tests" / "data" / "conversation_emotion_handmade_dev.csv"
DEV_AUX_ROWS: Final[int] = 1500


def build_splits(data_dir: Path | str, seed: int = 13) -> dict[str, list[ConvRow]]:
    """Our train and dev rows (the test sets are read only by the evaluation)."""
    rng = np.random.default_rng(seed)

    def sample(rows: list[ConvRow], n: int) -> list[ConvRow]:
        if len(rows) <= n:
            return rows
        return [rows[i] for i in sorted(rng.choice(len(rows), size=n, replace=False))]

    ed_train, ed_dev = ed_rows(data_dir, "train"), ed_rows(data_dir, "dev")
    es_train = sample(esconv_rows(data_dir, "train"), ESCONV_TRAIN_ROWS)
    es_dev = sample(esconv_rows(data_dir, "dev"), DEV_AUX_ROWS)
    train = ed_train + es_train
    dev = ed_dev + es_dev
    train += goemotions_rows(data_dir, "train", train, GOEMOTIONS_TRAIN_ROWS, seed)
    dev += goemotions_rows(data_dir, "dev", dev, DEV_AUX_ROWS, seed + 1)
    return {"train": train, "dev": dev}


def _metrics(logits: NDArray[np.float64], targets: NDArray[Any], calibration: dict[str, Any]) -> dict[str, Any]:
    from empathic_agent.training.evaluate import _calibration, classification_metrics

    prior = np.asarray(calibration["category_prior"], dtype=np.float64)
    p = _softmax((logits - float(calibration["logit_adjustment"]) * np.log(prior)) / float(calibration["temperature"]))
    gold = gold_sets(targets)
    pred = [CATEGORIES[j] for j in p.argmax(axis=1)]
    m = classification_metrics(gold, pred)
    return {"n": len(gold), "accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
            "weighted_f1": round(m["weighted_f1"], 4), "ece": round(_calibration(gold, p)["ece"], 4)}


def dev_report(head: Any, dev: Features, rows: Sequence[ConvRow], cal_context: dict[str, Any],
               cal_utterance: dict[str, Any]) -> dict[str, Any]:
    """Dev figures per source, with and without the context (each with its own calibration)."""
    with_ctx = head_logits(head, dev)
    without = dev.base_logits.astype(np.float64)
    out: dict[str, Any] = {}
    sources = sorted(set(dev.source))
    for src in sources + ["all"]:
        sel = np.array([(s == src or src == "all") for s in dev.source])
        has_turns = np.array([bool(r.turns) for r in rows])
        for name, mask in (("all_rows", sel), ("rows_with_context", sel & has_turns)):
            if not mask.any():
                continue
            out.setdefault(src, {})[name] = {
                "context": _metrics(with_ctx[mask], dev.target[mask], cal_context),
                "utterance_only": _metrics(without[mask], dev.target[mask], cal_utterance),
            }
    return out


def choose_label_share(candidates: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The rule (written before the run): among the shares whose context reading still beats the
    utterance-only reading on ED dev macro-F1 by at least 0.05, the best hand-made dev weighted F1
    (ties within 0.005: the better ED dev macro-F1).  The head ships only if, with that share, the
    context reading's hand-made dev weighted F1 is at least the utterance-only one."""
    def f1(c: dict[str, Any], which: str, reading: str, key: str) -> float:
        return float(c["scores"][which][reading][key])

    ok = [c for c in candidates
          if f1(c, "ed_dev", "context", "macro_f1") >= f1(c, "ed_dev", "utterance_only", "macro_f1") + 0.05] or list(candidates)
    best = max(f1(c, "handmade_dev", "context", "weighted_f1") for c in ok)
    close = [c for c in ok if f1(c, "handmade_dev", "context", "weighted_f1") >= best - 0.005]
    chosen = max(close, key=lambda c: f1(c, "ed_dev", "context", "macro_f1"))
    ship = f1(chosen, "handmade_dev", "context", "weighted_f1") >= f1(chosen, "handmade_dev", "utterance_only", "weighted_f1")
    return chosen, ship


def train(data_dir: Path | str, out_dir: Path | str, *, weights_dir: Path | str | None = None,
          cache_dir: Path | str | None = None, work_dir: Path | str | None = None, seed: int = 13,
          epochs: int = 12, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the context head on top of the utterance encoder in ``weights_dir`` (default: the
    packaged one) and write a complete weights folder to ``out_dir``.  Features are cached in
    ``work_dir`` (a rerun with the same rows and encoder reuses them)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from empathic_agent.encode import text_model as tm
    from empathic_agent.encode.text import CONFIG_FILE, DEFAULT_WEIGHTS_DIR, WEIGHTS_FILE, TextEncoder

    t0 = time.perf_counter()
    src_dir = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
    out = Path(out_dir)
    encoder = TextEncoder(src_dir, cache_dir=cache_dir)
    splits = build_splits(data_dir, seed)
    log(f"rows: train {len(splits['train'])}, dev {len(splits['dev'])}")
    digest = hashlib.sha256((src_dir / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]
    cache = Path(work_dir) if work_dir is not None else None
    feats: dict[str, Features] = {}
    for name, rows in splits.items():
        path = cache / f"{name}-{digest}-{seed}-{len(rows)}.npz" if cache is not None else None
        if path is not None and path.is_file():
            z = np.load(path)
            feats[name] = Features(z["utterance"], z["base_logits"], z["context"], z["state"], z["target"], z["weight"],
                                   [r.source for r in rows])
            continue
        f = extract_features(encoder, rows, progress=progress, drop_state=0.5 if name == "train" else 0.0,
                             seed=seed)
        feats[name] = f
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, utterance=f.utterance, base_logits=f.base_logits, context=f.context, state=f.state,
                     target=f.target, weight=f.weight)
    t_features = time.perf_counter() - t0
    base_cal = encoder.config["calibration"]
    hand_rows = csv_rows(HANDMADE_DEV)
    hand = extract_features(encoder, hand_rows, progress=False)
    dev = feats["dev"]
    sel = np.array([s in CALIBRATION_SOURCES for s in dev.source])
    ed = np.array([s == "ed" for s in dev.source])
    candidates = []
    for share in LABEL_SHARES:
        log(f"weak label share {share}")
        train_f = replace(feats["train"], target=weak_targets(feats["train"], share, base_cal))
        dev_f = replace(dev, target=weak_targets(dev, share, base_cal))
        head, history = train_context_head(train_f, dev_f, epochs=epochs, seed=seed, log=log)
        target, weight = dev_f.target.astype(np.float64)[sel], dev_f.weight.astype(np.float64)[sel]
        cal_context = fit_calibration(head_logits(head, dev_f)[sel], target, weight, base_cal)
        cal_utterance = fit_calibration(dev_f.base_logits.astype(np.float64)[sel], target, weight, base_cal)
        scores = {
            "handmade_dev": {"context": _metrics(head_logits(head, hand), hand.target, cal_context),
                             "utterance_only": _metrics(hand.base_logits.astype(np.float64), hand.target, cal_utterance)},
            "ed_dev": {"context": _metrics(head_logits(head, dev)[ed], dev.target[ed], cal_context),
                       "utterance_only": _metrics(dev.base_logits.astype(np.float64)[ed], dev.target[ed], cal_utterance)},
        }
        log(json.dumps({"share": share, **scores}))
        candidates.append({"share": share, "head": head, "history": history, "cal_context": cal_context,
                           "cal_utterance": cal_utterance, "scores": scores})
    chosen, ship_head = choose_label_share(candidates)
    head, history = chosen["head"], chosen["history"]
    cal_context, cal_utterance = chosen["cal_context"], chosen["cal_utterance"]
    report = dev_report(head, dev, splits["dev"], cal_context, cal_utterance)

    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != src_dir.resolve():
        for item in src_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, out / item.name)
    state = {k: v for k, v in load_file(str(src_dir / WEIGHTS_FILE)).items() if not k.startswith("context.")}
    # fp16 keeps the committed file small; the head runs in fp32 after loading.
    if ship_head:
        state.update({k: v.to(torch.float16).contiguous() for k, v in tm.context_head_state(head).items()})
    save_file(state, str(out / WEIGHTS_FILE))
    config = json.loads((src_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    config["context"] = {
        "turns": CONTEXT_TURNS, "max_tokens": CONTEXT_MAX_TOKENS, "width": tm.CONTEXT_WIDTH,
        "calibration": cal_context if ship_head else cal_utterance, "utterance_calibration": cal_utterance,
        "label_share": chosen["share"],
        "data": "EmpatheticDialogues dev file (our train/dev split by conversation), ESConv train/valid seeker "
                "turns (weak), GoEmotions train/dev with random contexts",
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    record = {
        "command": "empathic encoders train text-context", "seed": seed, "epochs": epochs,
        "label_share": chosen["share"], "context_head_shipped": ship_head,
        "selection": [{"share": c["share"], **c["scores"]} for c in candidates],
        "rows": {k: len(v) for k, v in splits.items()},
        "rows_by_source": {k: {s: sum(r.source == s for r in v) for s in sorted({r.source for r in v})}
                           for k, v in splits.items()},
        "history": history, "calibration": {"context": cal_context, "utterance_only": cal_utterance},
        "dev": report, "seconds": {"features": round(t_features, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    (out / "training_context.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record
