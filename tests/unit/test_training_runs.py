"""Re-thresholding refuses out-of-fold predictions cached by another training run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.training.runs import check_fingerprint, data_hashes, fingerprint


def test_the_fingerprint_names_the_files_and_the_seed(tmp_path):
    a = tmp_path / "writer1.csv"
    a.write_text("text,level\nhello,none\n")
    data = data_hashes([a])
    assert list(data) == ["writer1.csv"] and len(data["writer1.csv"]) == 16
    config = {"data": data, "seed": 7}
    check_fingerprint(fingerprint(data, 7), config, tmp_path / "oof.npz", tmp_path / "config.json")
    with pytest.raises(ConfigError, match="another training run"):
        check_fingerprint(fingerprint(data, 8), config, tmp_path / "oof.npz", tmp_path / "config.json")
    a.write_text("text,level\nhello,low\n")  # the same file name, other contents
    with pytest.raises(ConfigError, match="another training run"):
        check_fingerprint(fingerprint(data_hashes([a]), 7), config, tmp_path / "oof.npz", tmp_path / "config.json")
    with pytest.raises(ConfigError, match="older cache"):
        check_fingerprint(None, config, tmp_path / "oof.npz", tmp_path / "config.json")


def test_risk_rethreshold_refuses_a_cache_of_another_run(tmp_path):
    from empathic_agent.training.risk import rethreshold

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": {"writer1.csv": "0" * 16}, "seed": 1, "selection": {},
                                  "hyperparameters": {}}))
    oof = tmp_path / "safety-oof.npz"
    n = 4
    np.savez(oof, whole=np.zeros((n, 4)), views=np.zeros((n, 4)), levels=np.zeros(n, int),
             writers=np.array(["writer1"] * n), hard=np.ones(n, bool),
             run=np.array(fingerprint({"writer1.csv": "f" * 16}, 1)))
    before = config.read_text()
    with pytest.raises(ConfigError, match="another training run"):
        rethreshold(oof, config)
    assert config.read_text() == before  # nothing was written
