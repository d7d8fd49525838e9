"""Readers of the text emotion data sets in the shared data directory (never committed).

* **EmoBank** (Buechel & Hahn 2017; CC BY-SA 4.0): ``<data_dir>/emobank/emobank.csv`` with columns
  ``id,split,V,A,D,text``; V/A/D on a 1-5 scale (3 = neutral) mapped to [-1, 1] with (x - 3) / 2.
* **GoEmotions, Ekman grouping** (Demszky et al. 2020; Apache-2.0):
  ``<data_dir>/goemotions/ekman/{train,dev,test}.tsv`` with ``text<TAB>label_ids<TAB>id``, the ids
  indexing ``labels.txt`` (anger, disgust, fear, joy, neutral, sadness, surprise — exactly our seven
  categories).  Comments are multi-label: each row gives a *set* of gold categories.

Split names are the data sets' own: ``train``, ``dev``, ``test``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from empathic_agent.errors import EmpathicError
from empathic_agent.latent import CATEGORIES

__all__ = [
    "DatasetError",
    "SPLITS",
    "EMOBANK_CSV",
    "GOEMOTIONS_EKMAN_DIR",
    "emobank_split",
    "goemotions_ekman_split",
    "emobank_to_unit",
]

SPLITS: Final[tuple[str, ...]] = ("train", "dev", "test")
EMOBANK_CSV: Final[str] = "emobank/emobank.csv"
GOEMOTIONS_EKMAN_DIR: Final[str] = "goemotions/ekman"
#: EmoBank's scale: 1..5 with 3 = neutral.
EMOBANK_CENTER: Final[float] = 3.0
EMOBANK_HALF_RANGE: Final[float] = 2.0


class DatasetError(EmpathicError, ValueError):
    """A data set or evaluation CSV is missing or malformed (the message says what and where)."""


def emobank_to_unit(x: NDArray[np.float64] | float) -> NDArray[np.float64] | float:
    """EmoBank's 1..5 scale -> [-1, 1]."""
    return (x - EMOBANK_CENTER) / EMOBANK_HALF_RANGE


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")


def _missing(path: Path, what: str) -> DatasetError:
    return DatasetError(f"{what} not found at {path}; pass the shared data directory with --data-dir "
                        f"(or set EMPATHIC_DATA_DIR)")


def emobank_split(data_dir: Path | str, split: str) -> tuple[list[str], NDArray[np.float64]]:
    """EmoBank sentences of one split and their VAD in [-1, 1]: (texts, array (N, 3))."""
    _check_split(split)
    path = Path(data_dir) / EMOBANK_CSV
    if not path.is_file():
        raise _missing(path, "EmoBank")
    texts: list[str] = []
    vad: list[list[float]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("split") != split:
                continue
            try:
                values = [float(row["V"]), float(row["A"]), float(row["D"])]
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(f"{path}: bad V/A/D in row {row.get('id')!r}: {exc}") from None
            texts.append(row.get("text") or "")
            vad.append(values)
    if not texts:
        raise DatasetError(f"{path} has no rows with split={split!r}")
    return texts, np.asarray(emobank_to_unit(np.asarray(vad, dtype=np.float64)))


def goemotions_ekman_split(data_dir: Path | str, split: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """GoEmotions comments of one split with their gold category sets (in the file's order)."""
    _check_split(split)
    folder = Path(data_dir) / GOEMOTIONS_EKMAN_DIR
    path = folder / f"{split}.tsv"
    labels_path = folder / "labels.txt"
    if not path.is_file() or not labels_path.is_file():
        raise _missing(path if not path.is_file() else labels_path, "GoEmotions (Ekman grouping)")
    names = [line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    unknown = set(names) - set(CATEGORIES)
    if unknown:
        raise DatasetError(f"{labels_path} has labels outside our categories: {sorted(unknown)}")
    texts: list[str] = []
    gold: list[tuple[str, ...]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                raise DatasetError(f"{path}:{lineno}: expected text<TAB>label_ids<TAB>id")
            try:
                ids = [int(x) for x in parts[1].split(",") if x.strip()]
                labels = tuple(dict.fromkeys(names[i] for i in ids))  # dedupe, keep order
            except (ValueError, IndexError):
                raise DatasetError(f"{path}:{lineno}: bad label ids {parts[1]!r}") from None
            if not labels:
                raise DatasetError(f"{path}:{lineno}: no labels")
            texts.append(parts[0])
            gold.append(labels)
    return texts, gold
