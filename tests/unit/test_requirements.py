"""Hugging Face Spaces deployment as the repository stands (docs/deploy.md).

- `requirements.txt` (what Spaces installs) names the same packages as pyproject.toml's
  [project].dependencies (what `pip install -e .` installs): both files are read at run time.
- README.md's front matter pins `sdk_version` to the installed Gradio (the one the tests ran with)
  and sets `python_version` within `requires-python`.
- Every file a push would send that is over Spaces' 10 MB limit, and every weights file, is stored
  through Git LFS / Xet by `.gitattributes`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPACES_LIMIT = 10 * 1024 * 1024  # bytes: larger plain git files are rejected by the Hub


def normalise(name: str) -> str:
    """PEP 503: case-insensitive, runs of `-`, `_`, `.` are one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The distribution name of one requirement line; None for a blank, comment or option line."""
    line = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
    if not line or line.startswith(("#", "-")):  # comments; -r / --extra-index-url / -c … options
        return None
    m = re.match(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", line)
    assert m, f"unparsable requirement: {line!r}"
    return normalise(m.group(0))  # drops [extras], version specifiers, ; markers, @ urls


def requirements_txt() -> set[str]:
    names = [requirement_name(line) for line in (REPO / "requirements.txt").read_text().splitlines()]
    return {n for n in names if n}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pyproject_dependencies() -> set[str]:
    return {requirement_name(dep) for dep in pyproject()["project"]["dependencies"]} - {None}


def front_matter() -> dict[str, str]:
    """README.md's YAML front matter (the block between the first two `---` lines), flat keys only."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines and lines[0].strip() == "---", "README.md must open with the Spaces front matter (---)"
    end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    out = {}
    for line in lines[1:end]:
        if ":" in line and not line.startswith((" ", "-", "#")):
            key, value = line.split(":", 1)
            out[key.strip()] = value.split(" #", 1)[0].strip()
    return out


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def test_parser():
    assert requirement_name("Pillow_JXL.plugin[x] >= 1.0 ; python_version >= '3.11'  # jxl") == "pillow-jxl-plugin"
    assert requirement_name("torch") == "torch"
    assert requirement_name("# Hugging Face Spaces installs this") is None
    assert requirement_name("--extra-index-url https://download.pytorch.org/whl/cpu") is None
    assert requirement_name("   ") is None


def test_requirements_txt_names_the_pyproject_dependencies():
    txt, toml = requirements_txt(), pyproject_dependencies()
    assert {"torch", "torchvision", "gradio"} <= toml
    missing, extra = sorted(toml - txt), sorted(txt - toml)
    assert not missing and not extra, (
        f"requirements.txt (Spaces) and pyproject.toml [project].dependencies disagree: "
        f"only in pyproject.toml: {missing}; only in requirements.txt: {extra}")


def test_requirements_txt_has_no_duplicates():
    names = [requirement_name(line) for line in (REPO / "requirements.txt").read_text().splitlines()]
    names = [n for n in names if n]
    assert len(names) == len(set(names)), f"listed twice: {sorted({n for n in names if names.count(n) > 1})}"


def test_front_matter_pins_the_installed_gradio():
    try:
        installed = metadata.version("gradio")
    except metadata.PackageNotFoundError:
        pytest.skip("gradio is not installed")
    meta = front_matter()
    assert meta.get("sdk") == "gradio"
    assert "sdk_version" in meta, "README front matter: sdk_version missing (Spaces would pick a Gradio)"
    assert unquote(meta["sdk_version"]) == installed, (
        f"README front matter pins Gradio {unquote(meta['sdk_version'])}, the tests ran with {installed}")


def test_front_matter_sets_python_version_within_requires_python():
    meta = front_matter()
    assert "python_version" in meta, "README front matter: python_version missing (Spaces defaults to 3.10)"
    raw = meta["python_version"]
    assert raw[:1] in "'\"", "quote python_version: YAML reads 3.10 as the number 3.1"
    version = unquote(raw)
    assert re.fullmatch(r"3\.\d+(\.\d+)?", version), version
    requires = pyproject()["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(requires).contains(version), f"python_version {version} is outside {requires}"


def test_front_matter_app_file_exists():
    meta = front_matter()
    assert (REPO / unquote(meta.get("app_file", "app.py"))).is_file()


def pushed_files() -> list[str]:
    """What a push of this checkout would send: tracked files and untracked, not ignored ones."""
    if not shutil.which("git") or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return [p for p in out.split("\0") if p and (REPO / p).is_file()]


def lfs_tracked(paths: list[str]) -> dict[str, bool]:
    out = subprocess.run(["git", "check-attr", "-z", "filter", "--", *paths], cwd=REPO, capture_output=True,
                         check=True).stdout.decode().split("\0")
    return {out[i]: out[i + 2] == "lfs" for i in range(0, len(out) - 2, 3)}


def test_large_files_and_weights_go_through_lfs():
    assert (REPO / ".gitattributes").is_file(), ".gitattributes missing: Spaces reject plain files over 10 MB"
    files = pushed_files()
    must = [p for p in files if p.endswith(".safetensors") or (REPO / p).stat().st_size > SPACES_LIMIT]
    assert any(p.endswith(".safetensors") for p in must), "no weights found: is weights/ in this checkout?"
    plain = [p for p, tracked in lfs_tracked(must).items() if not tracked]
    assert not plain, f"not stored through LFS/Xet by .gitattributes (Spaces reject them): {plain}"
