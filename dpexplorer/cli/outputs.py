"""Writing outputs without ever losing a file: the command line's rules for inputs, output names and
folders, and the batch loop that reports each bad file and goes on.

Rules (README, "Command line"): default names never equal an input (encode: photo.png → photo.dpx,
decode: photo.dpx → photo.dpx.png, so a decode never lands on the original photo); an output that
is an input is refused even with --force; an existing output (a symlink too, even a dangling one)
needs --force; two inputs wanting one output are both refused; -o DIR/ or an existing folder is a
folder. Files are written to a temporary file beside the output and moved into place, so a
failure never leaves a half-written file, and a symlink at the output is replaced, never followed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from dpexplorer.cli import EXIT_FAILED, EXIT_OK, _fail


def expand_inputs(inputs: list[str], suffixes: set[str]) -> tuple[list[Path], bool]:
    """Files and folders → files (folders give their files with `suffixes`, sorted); batch mode?"""
    files, batch = [], len(inputs) > 1
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            batch = True
            files += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
        else:
            files.append(p)
    return files, batch


class OutputError(Exception):
    """A refusal to write one output (reported as `name: reason`)."""


def default_name(src: Path, suffix: str) -> str:
    return src.stem + suffix if suffix == ".dpx" else src.name + suffix


def plan_outputs(files: list[Path], batch: bool, out: str | None, suffix: str) -> tuple[list, Path | None]:
    """[(src, dst or None, reason)] and the output folder to create (None: none)."""
    folder = None
    if out is not None:
        is_folder = out.endswith(("/", os.sep)) or Path(out).is_dir()
        if batch and not is_folder and os.path.lexists(out):
            raise OutputError(f"{out}: not a folder (several inputs need -o FOLDER)")
        if batch or is_folder:
            folder = Path(out)
    dsts = [(folder / default_name(f, suffix)) if folder else
            Path(out) if out else f.with_name(default_name(f, suffix)) for f in files]
    # Compared case-blind: on macOS/Windows X.png and x.jpg would write one file.
    claimed: dict[str, list[Path]] = {}
    for src, dst in zip(files, dsts):
        claimed.setdefault(os.path.abspath(dst).casefold(), []).append(src)
    plan = []
    for src, dst in zip(files, dsts):
        rivals = [o for o in claimed[os.path.abspath(dst).casefold()] if o != src]
        plan.append((src, None, f"{dst} would also be written from {', '.join(map(str, rivals))}; "
                     "neither is written (rename one, or use -o per file)") if rivals else (src, dst, None))
    return plan, folder


def _file_id(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows a symlink: a link to an input counts as the input
        return st.st_dev, st.st_ino
    except OSError:
        return None


def check_output(dst: Path, input_ids: set, force: bool) -> None:
    """Refuse before any work: writing onto an input, onto a folder, or onto anything without --force."""
    if _file_id(dst) in input_ids:
        raise OutputError(f"{dst} is an input; refusing to overwrite it (choose another -o)")
    if dst.is_dir() and not dst.is_symlink():
        raise OutputError(f"{dst} is a folder")
    if os.path.lexists(dst) and not force:
        raise OutputError(f"{dst} exists (use --force)")


def write_output(dst: Path, write, force: bool) -> None:
    """`write(tmp)` fills a temporary file beside `dst`, which then replaces it atomically. Without
    --force a hard link puts it in place only if nothing is there (no race with another writer)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an output should look like any new file
        if force:
            os.replace(tmp, dst)  # replaces a symlink itself, never its target
        else:
            try:
                os.link(tmp, dst)
            except FileExistsError:
                raise OutputError(f"{dst} exists (use --force)") from None
            except OSError:  # no hard links on this file system (FAT, some shares)
                if os.path.lexists(dst):
                    raise OutputError(f"{dst} exists (use --force)") from None
                os.replace(tmp, dst)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _run_batch(files: list[Path], batch: bool, args, suffix: str, *, work) -> int:
    """Run `work(src, dst)` per file. One file: an error is one line, exit 1. Several: each bad
    file is reported (name: reason), the rest are written, exit 1."""
    if not files:
        return _fail("no input files")
    plan, folder = plan_outputs(files, batch, args.output, suffix)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    input_ids = {i for i in map(_file_id, files) if i is not None}
    failures = 0
    for src, dst, reason in plan:
        try:
            if reason:
                raise OutputError(reason)
            check_output(dst, input_ids, args.force)
            print(work(src, dst))
        except Exception as exc:  # report and go on with the next file
            failures += 1
            reason = str(exc) if _is_user_error(exc) else f"{type(exc).__name__}: {exc}"
            if not batch:  # one line; a refusal already names the output
                return _fail(reason if isinstance(exc, OutputError) or str(src) in reason else f"{src}: {reason}")
            print(f"{src}: {reason}", file=sys.stderr)
    if failures:
        print(f"dpexplorer: {failures} of {len(files)} file(s) failed", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def _is_user_error(exc: Exception) -> bool:
    from dpexplorer.errors import DPExplorerError

    return isinstance(exc, (DPExplorerError, OSError, OutputError))
