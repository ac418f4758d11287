"""Where the weights are found (DPEXPLORER_HOME, the checkout, the current folder) and the one cached
manifest lookup."""

import json

import pytest

from dpexplorer.errors import WeightsError
from dpexplorer.hub import manifest


def _home(path):
    (path / "weights").mkdir(parents=True)
    (path / "weights" / "manifest.json").write_text(json.dumps({"models": {}}))
    return path


def test_dpexplorer_home_then_checkout_then_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DPEXPLORER_WEIGHTS", raising=False)
    monkeypatch.setenv("DPEXPLORER_HOME", str(tmp_path / "home"))
    assert manifest.weights_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("DPEXPLORER_HOME")
    assert manifest.data_home() == manifest._CHECKOUT  # this checkout has weights/
    monkeypatch.setattr(manifest, "_CHECKOUT", tmp_path / "site-packages")  # an installed package
    monkeypatch.chdir(_home(tmp_path / "clone"))
    assert manifest.data_home() == tmp_path / "clone"


def test_no_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DPEXPLORER_WEIGHTS", raising=False)
    monkeypatch.setenv("DPEXPLORER_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="set DPEXPLORER_HOME"):
        manifest.find_entry("codec", None, 1)


def test_the_manifest_is_read_once_per_change(tmp_path, monkeypatch):
    directory = _home(tmp_path) / "weights"
    reads = []
    real = manifest.json.loads
    monkeypatch.setattr(manifest.json, "loads", lambda text: reads.append(1) or real(text))
    first = manifest.manifest(directory)
    assert manifest.manifest(directory) is first and len(reads) == 1
    edited = manifest.load_manifest(directory)  # a copy: editing it leaves the cached one alone
    edited["models"]["codec-x-q1"] = {"kind": "codec", "arch": "x", "quality": 1}
    assert first["models"] == {}
    manifest.save_manifest(edited, directory)
    assert manifest.find_entry("codec", "x", 1, directory)[0] == "codec-x-q1" and len(reads) == 2
