"""Which training run a cached artefact belongs to.

Training pipelines cache their out-of-fold predictions (``safety-oof.npz``, ``clinical-oof.npz``
under the cache directory) so thresholds can be chosen again without retraining
(``--rethreshold``).  The cache holds only the *last* run: after an experiment that was not
shipped, it belongs to other weights than the packaged ones, and thresholds chosen from it would
be silently wrong.  Each cache therefore carries the run's fingerprint (its training files' hashes
and seed, as written to the weights' config), and re-thresholding refuses a cache whose
fingerprint differs from the weights' config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from empathic_agent.errors import ConfigError

__all__ = ["data_hashes", "fingerprint", "check_fingerprint"]


def data_hashes(paths: Iterable[Path]) -> dict[str, str]:
    """{file name: first 16 hex digits of its SHA-256}: the training data a config names."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in paths}


def fingerprint(data: Mapping[str, str], seed: Any) -> str:
    """The run's fingerprint (stored in a cache as a string)."""
    return json.dumps({"data": dict(data), "seed": seed}, sort_keys=True)


def check_fingerprint(stored: Any, config: Mapping[str, Any], cache: Path, weights: Path) -> None:
    """Raise :class:`ConfigError` unless the cache (``stored``: its fingerprint, None when it has
    none) belongs to the run that wrote ``config``."""
    expected = fingerprint(config.get("data") or {}, config.get("seed"))
    if stored is None:
        raise ConfigError(f"{cache} does not say which training run it comes from (an older cache); re-run the "
                          f"training with folds before choosing thresholds again for {weights}")
    if str(stored) != expected:
        raise ConfigError(f"{cache} holds another training run's out-of-fold predictions (its files or seed differ "
                          f"from {weights}'s config): re-run the training of these weights with folds, or pass "
                          "the weights that run wrote")
