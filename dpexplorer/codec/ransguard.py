"""Entropy decoding of untrusted strings in a guarded child process.

CompressAI's rANS decoder (`compressai.ans.RansDecoder`, C++) reads 32-bit words from the string
without bounds checks: the initial state takes 8 bytes, every symbol may pull one more word, and
every escape (bypass) symbol pulls a data-dependent number of 4-bit groups, which a hostile string
can make large. How far past the end a malformed string makes it read has no useful bound (zero
padding would need hundreds of bytes per symbol to be provably enough), and strings under 16 bytes
sit in std::string's inline buffer on the stack, so the read walks off the stack: SIGSEGV.

So the native decoder runs in a small long-lived worker (`_rans_worker.py`: numpy and the
extension, no torch; started on first use). A crash or a hang there becomes a one-line
`BitstreamError` and the worker is restarted on the next call; the calling process never runs the
decoder on untrusted bytes. The worker also refuses non-canonical strings (see there).
Encoding stays in process: the encoder only ever sees symbols we computed.
"""

from __future__ import annotations

import atexit
import pickle
import select
import signal
import subprocess
import sys
import threading
from array import array

import numpy as np

from dpexplorer.codec import _rans_worker as proto
from dpexplorer.errors import BitstreamError

# A legitimate decode takes milliseconds per 100k symbols; anything near this is a hang.
TIMEOUT_S = 60.0

_lock = threading.Lock()
_proc: subprocess.Popen | None = None


def _start() -> subprocess.Popen:
    from compressai import ans

    # -I: no PYTHONPATH, user site or current directory — the worker needs only numpy.
    return subprocess.Popen([sys.executable, "-I", proto.__file__, ans.__file__],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _stop() -> None:
    global _proc
    if _proc is not None:
        _proc.kill()
        _proc.wait()
        _proc = None


atexit.register(_stop)


def _read(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def decode_with_indexes(string: bytes, indexes, cdfs, cdf_sizes, offsets) -> np.ndarray:
    """`RansDecoder.decode_with_indexes`, run in the worker: int32 symbols, or `BitstreamError`."""
    global _proc
    index_bytes = array("i", indexes).tobytes()
    with _lock:
        if _proc is None or _proc.poll() is not None:
            _proc = _start()
        try:
            pickle.dump((bytes(string), index_bytes, cdfs, cdf_sizes, offsets), _proc.stdin, protocol=5)
            _proc.stdin.flush()
            if not select.select([_proc.stdout], [], [], TIMEOUT_S)[0]:
                _stop()
                raise BitstreamError(f"entropy decoding did not finish in {TIMEOUT_S:g} s (malformed .dpx?)")
            status, length = proto.REPLY.unpack(_read(_proc.stdout, proto.REPLY.size))
            if length > len(index_bytes) + 4096:
                raise EOFError  # not a reply the worker writes: treat it as dead
            payload = _read(_proc.stdout, length)
            if status == proto.OK and length == len(index_bytes):
                return np.frombuffer(payload, dtype=np.int32)
            if status != proto.REFUSED:
                raise EOFError
            raise BitstreamError(f".dpx {payload[:200].decode('utf-8', 'replace')}")
        except (EOFError, OSError):  # the worker died (BrokenPipeError is an OSError)
            try:
                code = _proc.wait(5)
            except subprocess.TimeoutExpired:
                _proc.kill()
                code = _proc.wait()
            _proc = None
            why = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            raise BitstreamError(f"entropy decoder crashed on this .dpx ({why}): the file is malformed") from None


class GuardedCoder:
    """Stands in for a CompressAI entropy model's `entropy_coder`: encodes in process, decodes guarded."""

    def __init__(self, coder):
        self.name = coder.name  # what EntropyModel.__getstate__ pickles
        self.encode_with_indexes = coder.encode_with_indexes

    @staticmethod
    def decode_with_indexes(string, indexes, cdfs, cdf_sizes, offsets):  # called by CompressAI, by position
        return decode_with_indexes(string, indexes, cdfs, cdf_sizes, offsets)


def guard(model) -> None:
    """Route every entropy model of a CompressAI model through the guarded decoder."""
    for module in model.modules():
        if hasattr(module, "entropy_coder") and not isinstance(module.entropy_coder, GuardedCoder):
            module.entropy_coder = GuardedCoder(module.entropy_coder)
