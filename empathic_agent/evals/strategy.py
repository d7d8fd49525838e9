"""Which support strategy does a reply realise?  ESConv's eight strategies, read from the reply.

A fine-tuned MiniLM pair reader (:mod:`empathic_agent.evals.pair_model`; weights
``evals/weights/strategy.*``, trained by ``empathic judge train-strategy`` on ESConv train — academic
research use only) classifies (the person's last words, the reply).  **Adherence** compares it with
the strategy the planner chose for that reply: *exact* when the classified strategy is the planned
one, *family* when both are in the same ESConv stage (exploration, comforting, action, other).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from empathic_agent.settings import Settings

__all__ = ["StrategyClassifier", "adherence", "VETTED_BACKENDS"]

#: Replies that are not generated (the crisis protocol's, the clinical and careful registers' vetted ones):
#: adherence measures what the language model does with a planned strategy, so they are left out.
VETTED_BACKENDS = frozenset({"safety-protocol", "clinical-register", "careful-register"})


class StrategyClassifier:
    """Reads the strategy of replies (loads on first use)."""

    def __init__(self, folder: str | Path | None = None, *, settings: "Settings | None" = None) -> None:
        from empathic_agent.evals.pair_model import PairClassifier

        self.model = PairClassifier("strategy", folder, settings=settings)

    def available(self) -> bool:
        return self.model.available()

    def classify_many(self, contexts: Sequence[str], replies: Sequence[str]) -> list[dict[str, Any]]:
        """Per reply: the top strategy, its probability and family, and the distribution."""
        from empathic_agent.plan.register import family_of

        probs = self.model.predict(list(contexts), list(replies))["strategy"]
        classes = self.model.heads["strategy"]
        out = []
        for row in probs:
            k = int(row.argmax())
            out.append({"strategy": classes[k], "probability": round(float(row[k]), 4), "family": family_of(classes[k]),
                        "distribution": {c: round(float(p), 4) for c, p in zip(classes, row)}})
        return out

    def classify(self, context: str, reply: str) -> dict[str, Any]:
        return self.classify_many([context], [reply])[0]


def adherence(planned: str | None, classified: dict[str, Any] | None, *,
              backend: str | None = None) -> dict[str, Any] | None:
    """Planned vs. classified strategy: {"planned", "classified", "probability", "exact", "family"}
    (None when either is missing, the plan is not one of ESConv's strategies — the crisis protocol
    — or the reply was not generated: ``backend`` in :data:`VETTED_BACKENDS`)."""
    from empathic_agent.plan.register import STRATEGIES, family_of

    if not planned or not classified or planned not in STRATEGIES or backend in VETTED_BACKENDS:
        return None
    return {"planned": planned, "classified": classified["strategy"], "probability": classified.get("probability"),
            "exact": classified["strategy"] == planned, "family": family_of(classified["strategy"]) == family_of(planned)}
