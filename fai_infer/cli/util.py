"""The command lines' small helpers: a parser whose mistakes are one line, ``-k`` checking, and
text made safe for a terminal.

Apart from ``fai_infer/cli/main.py`` and importing only the standard library, so training, export
and the shop page use them without loading the catalogue, onnxruntime or hnswlib.
"""

from __future__ import annotations

import argparse

EXIT_USAGE, EXIT_ERROR = 2, 1
MAX_K = 1000


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes end in one line (what is wrong, and where help is), not a usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def k_value(text: str, limit: int = MAX_K) -> int:
    """-k: a whole number from 1 to ``limit`` (argparse turns the error into one usage line)."""
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= k <= limit:
        raise argparse.ArgumentTypeError(f"{k} is outside 1..{limit}")
    return k


def count_value(text: str, least: int = 0) -> int:
    """--threads (0 = all), --batch-size, --decode-threads: a whole number >= ``least``; -1
    used to be taken and handed to onnxruntime."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < least:
        raise argparse.ArgumentTypeError(f"{n} is below {least}")
    return n


def visible(text: object) -> str:
    """Text for a terminal with control characters shown, not obeyed: an id, file name or
    metadata value holding ESC sequences must not recolour, retitle or rewrite the screen."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in str(text))
