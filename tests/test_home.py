"""Where the weights are found (DPEXPLORER_HOME, the checkout, the current folder) and the one cached
manifest lookup."""

import json

import pytest

from dpexplorer import weights
from dpexplorer.errors import WeightsError


def _home(path):
    (path / "weights").mkdir(parents=True)
    (path / "weights" / "manifest.json").write_text(json.dumps({"models": {}}))
    return path


def test_dpexplorer_home_then_checkout_then_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DPEXPLORER_WEIGHTS", raising=False)
    monkeypatch.setenv("DPEXPLORER_HOME", str(tmp_path / "home"))
    assert weights.weights_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("DPEXPLORER_HOME")
    assert weights.data_home() == weights._CHECKOUT  # this checkout has weights/
    monkeypatch.setattr(weights, "_CHECKOUT", tmp_path / "site-packages")  # an installed package
    monkeypatch.chdir(_home(tmp_path / "clone"))
    assert weights.data_home() == tmp_path / "clone"


def test_no_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DPEXPLORER_WEIGHTS", raising=False)
    monkeypatch.setenv("DPEXPLORER_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="set DPEXPLORER_HOME"):
        weights.find_entry("codec", None, 1)


def test_the_manifest_is_read_once_per_change(tmp_path, monkeypatch):
    directory = _home(tmp_path) / "weights"
    reads = []
    real = weights.json.loads
    monkeypatch.setattr(weights.json, "loads", lambda text: reads.append(1) or real(text))
    first = weights.manifest(directory)
    assert weights.manifest(directory) is first and len(reads) == 1
    edited = weights.load_manifest(directory)  # a copy: editing it leaves the cached one alone
    edited["models"]["codec-x-q1"] = {"kind": "codec", "arch": "x", "quality": 1}
    assert first["models"] == {}
    weights.save_manifest(edited, directory)
    assert weights.find_entry("codec", "x", 1, directory)[0] == "codec-x-q1" and len(reads) == 2
