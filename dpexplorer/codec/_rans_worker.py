"""Child process that runs CompressAI's native rANS decoder on untrusted strings (see `ransguard`).

Run as `python -I _rans_worker.py /path/to/compressai/ans*.so`: numpy and the extension, loaded from
its file, so the worker starts in a fraction of a second without torch.

Protocol: requests are pickles from the parent (trusted) on stdin; replies on stdout are raw
(status byte, 4-byte length, payload) — never pickles, so a worker whose memory a hostile string
managed to corrupt cannot make the parent unpickle anything.
"""

import importlib.util
import pickle
import struct
import sys
from array import array

import numpy as np

OK, REFUSED = 0, 1
REPLY = struct.Struct(">BI")

# Zeros after the string: short strings leave std::string's inline (stack) buffer, and reads a
# malformed string makes past its end see zeros instead of whatever memory follows.
PAD = bytes(4096)


def encodable(values, index_bytes, sizes, offsets) -> bool:
    """Whether `RansEncoder.encode_with_indexes` stays in bounds on these symbols.

    The encoder (rans_interface.cpp) counts an escape value's nibbles with `raw >> (4 * n) != 0`
    on an int32: from 2^28 on the shift reaches 32, which x86 takes as 0, and the loop never ends.
    It writes into a buffer of one 32-bit word per symbol: its state x stays in [2^31, 2^63),
    every word written takes 32 bits off log2(x), every symbol adds at most 16 bits (+2^-14
    rounding) and every escape 4 bits per nibble, which bounds the words written.
    Files our encoder wrote always pass (it could not have written them otherwise).
    """
    idx = np.frombuffer(index_bytes, np.int32)
    v = np.array(values, np.int64) - np.asarray(offsets, np.int64)[idx]
    top = np.asarray(sizes, np.int64)[idx] - 2
    escape = (v < 0) | (v >= top)
    v, top = v[escape], top[escape]  # escapes are rare: the rest works on a few values
    raw = np.where(v < 0, -2 * v - 1, 2 * (v - top))
    if raw.size and raw.max() >= 2**28:
        return False
    nibbles = sum(int(np.count_nonzero(raw >> (4 * k))) for k in range(7)) + raw.size  # + count
    n = len(values)
    return (16 * n + n / 1000 + 4 * nibbles) / 32 + 2 <= n


def main() -> None:
    spec = importlib.util.spec_from_file_location("ans", sys.argv[1])
    ans = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ans)
    dec, enc = ans.RansDecoder(), ans.RansEncoder()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            string, index_bytes, cdfs, sizes, offsets = pickle.load(stdin)
        except EOFError:
            return
        indexes = array("i", index_bytes).tolist()
        values = dec.decode_with_indexes(string + PAD, indexes, cdfs, sizes, offsets)
        # Canonical check: rANS decoding is the exact inverse of encoding, so the string is accepted
        # only if it is byte for byte what the encoder writes for the symbols it decodes to. That
        # refuses strings the decoder read past (truncated, extended, edited) and makes the result a
        # function of the file alone. The encoder is only run on symbols it can encode safely.
        if encodable(values, index_bytes, sizes, offsets) and \
                enc.encode_with_indexes(values, indexes, cdfs, sizes, offsets) == string:
            payload = array("i", values).tobytes()
            stdout.write(REPLY.pack(OK, len(payload)) + payload)
        else:
            msg = b"entropy-coded string is malformed (it is not what the encoder writes for its symbols)"
            stdout.write(REPLY.pack(REFUSED, len(msg)) + msg)
        stdout.flush()


if __name__ == "__main__":
    main()
