"""`dpexplorer` command line: encode, decode, metrics, train, eval, report, bench, download-kodak.

Errors print one line (`dpexplorer: error: …`) and exit non-zero; no traceback. With several inputs
or a folder, each bad file is reported (name: reason) and skipped, the rest are written, and the
exit code is 1. The commands live in `coding` (encode, decode, metrics), `train` and `evaluate`
(eval, bench, report, download-kodak); `outputs` holds the rules that never lose a file.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

EXIT_OK, EXIT_FAILED = 0, 1  # argparse itself exits 2 on usage errors


def _fail(msg: str) -> int:
    print(f"dpexplorer: error: {msg}", file=sys.stderr)
    return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    from dpexplorer.cli import coding, evaluate, train

    p = argparse.ArgumentParser(prog="dpexplorer", description="See and steer the distortion–perception "
                                "tradeoff of neural image compression.")
    sub = p.add_subparsers(dest="command", required=True)
    coding.add_parsers(sub)
    train.add_parsers(sub)
    evaluate.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    args = build_parser().parse_args(argv)
    from dpexplorer.cli.outputs import OutputError
    from dpexplorer.errors import DPExplorerError

    try:
        return args.func(args)
    except (DPExplorerError, OSError, ValueError, OutputError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
