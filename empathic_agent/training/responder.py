"""``empathic train responder``: teach the embedded LLM to say what the plan asks.

The planner picks a support strategy, tone and length for every reply; a small instruct model does
not reliably carry it out (it offers condolences for a job offer).  This fine-tunes a base model
with LoRA (``peft``) on what skilled supporters said, in the agent's *own* prompt format:

* **Data** — the supporter turns of ESConv (Liu et al. 2021) *train*; ``valid`` for the dev loss.
  ESConv *test* is never read here (it is the evaluation split of ``empathic eval replies``).
  Every item is the first supporter turn after a run of seeker messages, as in ``eval replies``.
* **Input** — exactly the prompt the agent builds at run time for that turn: the system prompt
  with the persona, the history window, and this turn's context — the perceived emotion (the
  text encoder on the seeker's words, fused as the graph's encode step does), no recalled
  memories, and the register the planner makes when ESConv's gold strategy is the plan
  (:attr:`PlanInput.strategy`).  The same functions build it (``generate.prompt``, ``plan``).
* **Target** — the supporter's words and the chat template's end-of-turn token; the loss is on
  those tokens only.

Training is seeded and resumable: a checkpoint (adapter, optimiser, schedule, step) is written
every ``--checkpoint-every`` steps and when ``--max-minutes`` runs out; the same command resumes.
The result is ``OUT/adapter`` (``adapter_config.json`` + ``adapter_model.safetensors``) and
``OUT/training.json``.  Ship an adapter by copying it to ``empathic_agent/generate/adapters/NAME``
(its weights packed as int8 by :func:`empathic_agent.models.prepare.pack_adapter`, a quarter of
the size) with a model card; the model registry then offers ``NAME`` (base + adapter, merged once).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

from empathic_agent.errors import ConfigError

if TYPE_CHECKING:
    from empathic_agent.evals.replies import ReplyItem
    from empathic_agent.settings import Settings

__all__ = ["ResponderOptions", "ResponderExample", "build_examples", "train_responder", "LORA_TARGETS"]

log = logging.getLogger(__name__)

#: Linear maps that get adapters: attention and MLP of every layer (Llama/Qwen2 names).
LORA_TARGETS: Final[tuple[str, ...]] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHECKPOINT: Final = "checkpoint.pt"
EXAMPLES_VERSION: Final = 1


@dataclass(frozen=True)
class ResponderExample:
    """One training pair: the agent's prompt for a turn and the supporter's reply."""

    id: str
    #: Chat messages as dicts (role, content): exactly what the LLM receives.
    messages: tuple[dict[str, str], ...]
    reply: str
    strategy: str


@dataclass(frozen=True)
class ResponderOptions:
    out: Path
    data_dir: Path
    #: Base model: a registry name, a local directory or a hub id (as ``llm_model``).
    base: str = "smollm2-135m-instruct"
    #: Training examples drawn (seeded) from ESConv train; None = all.
    limit: int | None = None
    dev_limit: int = 100
    epochs: float = 1.0
    batch_size: int = 8
    lr: float = 2e-4
    rank: int = 16
    alpha: float = 32.0
    #: No adapter dropout by default: its copy of every activation costs ~50 % of a forward pass on
    #: a CPU, and one epoch over thousands of different dialogues hardly over-fits.
    dropout: float = 0.0
    #: Longest example in tokens (prompt + reply); longer ones are left out (counted in the report).
    max_tokens: int = 768
    warmup: float = 0.05
    seed: int = 0
    checkpoint_every: int = 50
    max_minutes: float | None = None
    fresh: bool = False
    progress: bool = True
    threads: int | None = None


# -- data ------------------------------------------------------------------------------------------

def _fingerprint(settings: "Settings", split: str) -> str:
    """What the prompts depend on: a change rebuilds the cached examples."""
    key = json.dumps([EXAMPLES_VERSION, split, settings.system_prompt, settings.persona,
                      settings.history_messages, settings.max_input_chars], default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def build_examples(items: Sequence["ReplyItem"], settings: "Settings", *, encoder: Any = None,
                   persona: Any = None, progress: bool = False) -> list[ResponderExample]:
    """The agent's prompt for every item, with the item's gold strategy as the plan."""
    from langchain_core.messages import AIMessage, HumanMessage
    from tqdm.auto import tqdm

    from empathic_agent.encode import load_encoder
    from empathic_agent.generate.prompt import build_prompt, system_prompt
    from empathic_agent.latent import fuse
    from empathic_agent.perceive.text import clean_text
    from empathic_agent.plan import PlanInput, load_persona, plan_register, update_mood

    persona = persona if persona is not None else load_persona(settings.persona)
    encoder = encoder if encoder is not None else load_encoder("text", settings)
    system = system_prompt(settings.system_prompt, persona)
    out: list[ResponderExample] = []
    for item in tqdm(items, desc="prompts", unit="turn", disable=not progress):
        if not item.strategy or not item.reference.strip():
            continue
        text = clean_text(item.message, max_chars=settings.max_input_chars)
        fused = fuse([encoder.encode(text)])
        mood = update_mood(None, persona, perceived=fused.mean, confidence=fused.confidence)
        history = [HumanMessage(content=t) if role == "user" else AIMessage(content=t) for role, t in item.history]
        history.append(HumanMessage(content=text))
        x = PlanInput(state=fused.mean, confidence=fused.confidence, top_category=fused.top_category,
                      mixed_signals=bool(fused.mixed_signals.flag),
                      turn_index=sum(1 for m in history if isinstance(m, HumanMessage)),
                      previous_strategies=tuple(item.previous_strategies), text=text, mood=mood,
                      strategy=item.strategy)
        reg = plan_register(x, persona)
        messages = build_prompt(system, history, max_messages=settings.history_messages,
                                perception=fused.describe(), memories="",
                                register=reg.prompt_lines(), reply_hint=reg.reply_hint())
        out.append(ResponderExample(item.id, tuple(m.to_dict() for m in messages), item.reference.strip(),
                                    item.strategy))
    return out


def _cached_examples(path: Path, fingerprint: str, make: Any) -> list[ResponderExample]:
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            head = json.loads(fh.readline())
            if head.get("fingerprint") == fingerprint:
                return [ResponderExample(r["id"], tuple(r["messages"]), r["reply"], r["strategy"])
                        for r in map(json.loads, fh)]
    examples = make()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"fingerprint": fingerprint}) + "\n")
        for e in examples:
            fh.write(json.dumps(asdict(e)) + "\n")
    os.replace(tmp, path)
    return examples


def tokenize_example(tok: Any, example: ResponderExample) -> tuple[list[int], int] | None:
    """Token ids of prompt + reply and the prompt's length (:func:`chat_reply_tokens`)."""
    from empathic_agent.generate.transformers_llm import chat_reply_tokens

    return chat_reply_tokens(tok, list(example.messages), example.reply)


# -- training --------------------------------------------------------------------------------------

@dataclass
class _State:
    step: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    #: Dev loss before any training (kept in the checkpoint, so a resumed run still reports it).
    dev_before: float | None = None


def _batches(lengths: list[int], batch_size: int, seed: int, epochs: float) -> list[list[int]]:
    """Seeded batches of similar length (little padding): shuffle, cut into chunks of 32 batches,
    sort each chunk by length, batch it, shuffle the batches."""
    rng = random.Random(seed)
    order: list[int] = []
    for e in range(math.ceil(epochs)):
        idx = list(range(len(lengths)))
        rng.shuffle(idx)
        if e + 1 > epochs:  # a fractional last epoch
            idx = idx[: int(len(idx) * (epochs - e))]
        order += idx
    chunk = batch_size * 32
    batches: list[list[int]] = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c:c + chunk], key=lambda i: lengths[i])
        group = [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
        rng.shuffle(group)
        batches += group
    return batches


def _prompt_cache(model: Any, ids: list[int], n_prompt: int) -> Any:
    """The key/value cache of the prompt (but its last token), read without gradient."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    with torch.no_grad():
        model(input_ids=torch.tensor([ids[:n_prompt - 1]]), past_key_values=cache, use_cache=True, logits_to_keep=1)
    return cache


def _reply_loss(model: Any, ids: list[int], n_prompt: int, cache: Any) -> Any:
    """Mean loss of the reply tokens after the cached prompt."""
    import torch

    rest = torch.tensor([ids[n_prompt - 1:]])
    labels = rest.clone()
    labels[0, 0] = -100  # the last prompt token is input only: its logits predict the first reply token
    return model(input_ids=rest, past_key_values=cache, use_cache=True, labels=labels).loss


def _batch_caches(model: Any, examples: Sequence[tuple[list[int], int]]) -> list[Any]:
    """Prompt caches of a batch, read with the adapter merged into the weights.

    Why: on 2 CPU cores a full forward+backward over a ~300-token prompt costs ~4 s per example,
    and the loss is on ~25 reply tokens.  The prompt is read without gradient (with the current
    adapter, so the forward pass is exactly the model's), and with the adapter merged for that
    read (the separate low-rank products cost ~40 % more); only the reply tokens back-propagate
    (~4x cheaper in all).  The gradient then leaves out the adapter's effect on the prompt's keys
    and values — a truncated gradient, like truncated back-propagation through time; the adapter
    still learns everything the reply tokens compute from the context.
    """
    model.merge_adapter()
    try:
        return [_prompt_cache(model, ids, n) for ids, n in examples]
    finally:
        model.unmerge_adapter()


def _dev_loss(model: Any, encoded: list[tuple[list[int], int]]) -> float:
    """Token-weighted mean loss of the replies (nats per token)."""
    import torch

    total, tokens = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for ids, n_prompt in encoded:
            n = len(ids) - n_prompt
            total += float(_reply_loss(model, ids, n_prompt, _prompt_cache(model, ids, n_prompt))) * n
            tokens += n
    model.train()
    return total / max(1, tokens)


def train_responder(opts: ResponderOptions, settings: "Settings") -> dict[str, Any]:
    """Fine-tune ``opts.base`` on ESConv train in the agent's prompt format; returns the report."""
    import torch
    from tqdm.auto import tqdm

    try:
        from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    except ImportError as exc:
        raise ConfigError("training the responder needs peft: pip install 'empathic-agent[train]'") from exc
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from empathic_agent.evals.replies import load_items
    from empathic_agent.models import resolve_model

    t_start = time.perf_counter()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    resolved = resolve_model("llm", opts.base, settings.cache_dir)
    tok = AutoTokenizer.from_pretrained(resolved.location)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token

    # Data: the split is ESConv's own (train / valid); test is never read.
    def examples(split: str, limit: int | None) -> list[ResponderExample]:
        items = load_items(f"esconv:{split}", data_dir=opts.data_dir, limit=limit, seed=opts.seed)
        return _cached_examples(out / f"examples-{split}-{limit or 'all'}-s{opts.seed}.jsonl",
                                _fingerprint(settings, split),
                                lambda: build_examples(items, settings, progress=opts.progress))

    train_ex, dev_ex = examples("train", opts.limit), examples("valid", opts.dev_limit)
    enc_train, skipped = [], {"too_long": 0, "template": 0}
    for e in train_ex:
        t = tokenize_example(tok, e)
        if t is None:
            skipped["template"] += 1
        elif len(t[0]) > opts.max_tokens:
            skipped["too_long"] += 1
        else:
            enc_train.append(t)
    enc_dev = [t for t in (tokenize_example(tok, e) for e in dev_ex) if t is not None and len(t[0]) <= opts.max_tokens]
    if not enc_train:
        raise ConfigError("no training examples left (check --max-tokens and the data)")
    batches = _batches([len(ids) for ids, _ in enc_train], opts.batch_size, opts.seed, opts.epochs)

    torch.manual_seed(opts.seed)
    model = AutoModelForCausalLM.from_pretrained(resolved.location, dtype=torch.float32)
    model.config.use_cache = False
    # peft annotates lora_alpha as int but scales by it as a number; a float alpha is used as given.
    config = LoraConfig(r=opts.rank, lora_alpha=opts.alpha, lora_dropout=opts.dropout,  # type: ignore[arg-type]
                        target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")
    model = get_peft_model(model, config)  # type: ignore[assignment]  # the LoRA-wrapped model
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    warm = max(1, int(len(batches) * opts.warmup))
    total = len(batches)
    # Linear warm-up, then linear decay to zero at the last step.
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))

    state = _State()
    ckpt = out / CHECKPOINT
    settings_key = {k: v for k, v in asdict(opts).items() if k not in ("out", "data_dir", "max_minutes", "fresh",
                                                                        "progress", "threads", "checkpoint_every")}
    if ckpt.is_file() and not opts.fresh:
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        if saved["options"] != json.loads(json.dumps(settings_key, default=str)):
            raise ConfigError(f"{ckpt} was made with other options ({saved['options']}); "
                              "pass --fresh to start over or the same options to resume")
        set_peft_model_state_dict(model, saved["adapter"])
        optim.load_state_dict(saved["optim"])
        sched.load_state_dict(saved["sched"])
        state = _State(**saved["state"])
        torch.set_rng_state(saved["rng"])
        log.warning("resuming at step %d of %d", state.step, len(batches))

    def save_checkpoint() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"options": json.loads(json.dumps(settings_key, default=str)),
                    "adapter": get_peft_model_state_dict(model), "optim": optim.state_dict(),
                    "sched": sched.state_dict(), "state": asdict(state), "rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, ckpt)

    if state.step == 0 and state.dev_before is None and enc_dev:
        state.dev_before = _dev_loss(model, enc_dev)
    model.train()
    budget_s = opts.max_minutes * 60 if opts.max_minutes is not None else None
    t_run = time.perf_counter()
    bar = tqdm(total=len(batches), initial=state.step, desc=f"train {opts.base}", unit="step", disable=not opts.progress)
    stopped = False
    try:
        while state.step < len(batches):
            t0 = time.perf_counter()
            members = [enc_train[i] for i in batches[state.step]]
            loss = 0.0
            # One example at a time (no padding), the prompts read first without gradient.
            for (ids, n), cache in zip(members, _batch_caches(model, members)):
                part = _reply_loss(model, ids, n, cache) / len(members)
                part.backward()
                loss += float(part)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            state.step += 1
            state.losses.append(round(float(loss), 4))
            state.seconds += time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{sum(state.losses[-20:]) / len(state.losses[-20:]):.3f}")
            if state.step % opts.checkpoint_every == 0:
                save_checkpoint()
            if budget_s is not None and time.perf_counter() - t_run > budget_s and state.step < len(batches):
                stopped = True
                break
    finally:
        bar.close()
    save_checkpoint()
    report: dict[str, Any] = {
        "schema": "empathic-responder-training/1", "base": opts.base, "base_location": resolved.location,
        "options": json.loads(json.dumps(settings_key, default=str)),
        "data": {"train": f"ESConv train, {len(train_ex)} supporter turns drawn, {len(enc_train)} used",
                 "dev": f"ESConv valid, {len(enc_dev)} turns", "skipped": skipped,
                 "train_tokens": sum(len(ids) for ids, _ in enc_train),
                 "reply_tokens": sum(len(ids) - n for ids, n in enc_train)},
        "steps": state.step, "steps_total": len(batches), "finished": not stopped,
        "train_seconds": round(state.seconds, 1),
        "seconds_per_step": round(state.seconds / max(1, state.step), 2),
        "threads": torch.get_num_threads(),
        "loss_first_20": round(sum(state.losses[:20]) / max(1, len(state.losses[:20])), 4),
        "loss_last_20": round(sum(state.losses[-20:]) / max(1, len(state.losses[-20:])), 4),
    }
    if stopped:
        report["note"] = "stopped at the time budget; run the same command again to resume"
    else:
        report["dev_loss_before"] = round(state.dev_before, 4) if state.dev_before is not None else None
        report["dev_loss_after"] = round(_dev_loss(model, enc_dev), 4) if enc_dev else None
        adapter = out / "adapter"
        model.save_pretrained(str(adapter))
        report["adapter"] = str(adapter)
    report["wall_seconds_this_run"] = round(time.perf_counter() - t_start, 1)
    (out / "training.json").write_text(json.dumps(report, indent=1))
    return report
