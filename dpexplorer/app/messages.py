"""What a user is told when something fails: one line, never a server path."""

from __future__ import annotations

import logging
import re

import gradio as gr

from dpexplorer.errors import DPExplorerError

_log = logging.getLogger("dpexplorer.app")

# An absolute POSIX or Windows path (a run of path characters after / or X:\).
_PATH = re.compile(r"(?:[A-Za-z]:\\|(?<![\w.])/)[^\s'\"`:,;()\[\]]+")


_QUOTED_PATH = re.compile(r"""(['"])((?:[A-Za-z]:\\|/)[^'"]*)\1""")  # may hold spaces


def _last_part(path: str) -> str:
    return re.split(r"[\\/]", path.rstrip("/\\"))[-1] or "file"


def public_message(text: str) -> str:
    """`text` with every absolute path cut to its last component: messages never show server paths."""
    text = _QUOTED_PATH.sub(lambda m: m.group(1) + _last_part(m.group(2)) + m.group(1), text)
    return _PATH.sub(lambda m: _last_part(m.group(0)), text)


def user_error(exc: Exception) -> gr.Error:
    if isinstance(exc, OSError) and not isinstance(exc, DPExplorerError):  # e.g. "[Errno 2] …: '/tmp/…'"
        return gr.Error(public_message(exc.strerror or "could not read the file"))
    if isinstance(exc, (DPExplorerError, ValueError)):
        return gr.Error(public_message(str(exc)))
    _log.exception("unexpected error")  # the details stay in the server log
    return gr.Error(f"Internal error ({type(exc).__name__}); please try again or another file.")
