"""The package's import direction (docs/architecture.md), read from the source with `ast`: every import,
lazy ones inside functions included.

Data flow, lowest first: io → codec → hub → decoders → metrics → hint → training → evaluation → app, cli.
A module imports its own package, the shared `errors` and `cache`, and packages below its own; no
exceptions."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dpexplorer"
LAYERS = ["io", "codec", "hub", "decoders", "metrics", "hint", "training", "evaluation", "app", "cli"]
SHARED = {"errors", "cache"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module named by an import in the file (`from dpexplorer import x` names dpexplorer.x)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
            if node.module == "dpexplorer":
                names.update(f"dpexplorer.{a.name}" for a in node.names)
    return names


def _package(module: str) -> str:
    """dpexplorer.codec.tiling → codec; dpexplorer.errors → errors; dpexplorer → ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


IMPORTS = {module: _imports(path) for module, path in MODULES.items()}
INTERNAL = {m: {i for i in names if i.startswith("dpexplorer.")} for m, names in IMPORTS.items()}


def test_every_package_is_a_layer_or_shared():
    assert {_package(m) for m in MODULES} - {""} == set(LAYERS) | SHARED | {"__main__"}


# the app's modules that work without a UI (and are unit-tested without a server)
UI_FREE = {"dpexplorer.app.session", "dpexplorer.app.scrub", "dpexplorer.app.compare", "dpexplorer.app.housekeeping"}


def test_gradio_only_in_the_app_pages():
    users = {m for m, names in IMPORTS.items() if any(n == "gradio" or n.startswith("gradio.") for n in names)}
    assert users and all(_package(m) == "app" for m in users), users
    assert not users & UI_FREE


def test_nothing_imports_the_app_or_the_cli():
    """Only app/ and cli/ themselves, and `python -m dpexplorer` (__main__ runs the CLI)."""
    for module, names in INTERNAL.items():
        if _package(module) in ("app", "cli") or module == "dpexplorer.__main__":
            continue
        assert not {n for n in names if _package(n) in ("app", "cli")}, module


def test_io_and_codec_stay_at_the_bottom():
    for module, names in INTERNAL.items():
        allowed = {"io": {"io", "errors"}, "codec": {"codec", "io", "errors", "cache"}}.get(_package(module))
        if allowed is not None:
            assert {_package(n) for n in names} <= allowed, module


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m) in LAYERS))
def test_imports_go_down_the_data_flow(module):
    rank = LAYERS.index(_package(module))
    for name in INTERNAL[module]:
        target = _package(name)
        if target in SHARED:
            continue
        assert LAYERS.index(target) <= rank, f"{module} imports {name}, above it"


def test_the_shared_modules_import_nothing_of_the_package():
    for module in ("dpexplorer.errors", "dpexplorer.cache", "dpexplorer"):
        assert not INTERNAL[module], module
