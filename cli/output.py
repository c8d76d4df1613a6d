"""Small output helpers for the CLI: tables, JSON, ages, and a progress line on stderr.

Human output goes to stdout as aligned text; ``--json`` output is one JSON document (or one
JSON object per line for streams). Progress and errors go to stderr so stdout stays clean
for pipes.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character but tab and newline shown as ``\\xNN``.

    Why: what the CLI prints comes in part from other organisations (a cancellation
    reason, an item description, an error message a node relays), and a terminal obeys
    the escape sequences in it: retitling the window, erasing the line, faking a line of
    output. JSON output needs it too: ``json.dumps`` leaves DEL and the C1 range as they
    are.
    """
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class TerminalSafe(io.TextIOBase):
    """A text stream that writes through :func:`printable` (what ``main`` puts on stdout).

    A reader that went away (``jangbu keygen | true``) does not fail the command: what is
    left to print goes nowhere and the command finishes its work (regression: keygen and
    ``network init`` said "Broken pipe" and exited 1 after doing theirs, and ``devnet
    down`` would have left nodes running after its first line). A command that only
    prints, and would print forever (``events --follow | head``), stops when
    :attr:`reader_gone` is set.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        try:
            self.stream.write(printable(text))
        except BrokenPipeError:
            self._reader_gone()
        return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        """Send the rest to /dev/null, the file descriptor too, so that the interpreter's
        own flush at exit does not complain either."""
        if self.reader_gone:
            return
        self.reader_gone = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        self.stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()


def print_json(value: Any, *, compact: bool = False, file: TextIO | None = None) -> None:
    """One JSON document on stdout (indented unless ``compact``)."""
    text = (json.dumps(value, separators=(",", ":"), ensure_ascii=False) if compact
            else json.dumps(value, indent=2, ensure_ascii=False))
    print(text, file=file or sys.stdout)


def cell(value: Any) -> str:
    """How one value looks in a table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, with a header line."""
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    for row in text_rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    print(table(headers, rows))


def records_table(records: Sequence[dict[str, Any]]) -> str | None:
    """A table for a list of flat-ish records (union of keys, in first-seen order), else None."""
    if not records or not all(isinstance(r, dict) for r in records):
        return None
    headers: list[str] = [k for k in ("id", "name", "pubkey") if k in records[0]]
    for record in records:
        for key in record:
            if key not in headers:
                headers.append(key)
    return table(headers, [[record.get(h) for h in headers] for record in records])


def age(ms: int | None, *, now_ms: int | None = None) -> str:
    """``12s``, ``3m04s``, ``2h05m``, ``3d04h`` since the given Unix time in milliseconds."""
    if ms is None:
        return "-"
    now = int(time.time() * 1000) if now_ms is None else now_ms
    seconds = max(0, (now - ms) // 1000)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def short(hex_value: str | None, length: int = 12) -> str:
    return "-" if not hex_value else hex_value[:length]


class Progress:
    """A one-line progress indicator on stderr: a spinner on a terminal, dots otherwise."""

    SPINNER = "|/-\\"

    def __init__(self, label: str, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._frames = itertools.cycle(self.SPINNER)
        self._last_dot = 0.0
        self._width = 0
        if not self.tty:
            self.stream.write(label)
            self.stream.flush()

    def update(self, detail: str = "") -> None:
        if self.tty:
            line = f"\r{next(self._frames)} {self.label} {detail}"
            self.stream.write(line.ljust(self._width))
            self._width = len(line)
        elif time.monotonic() - self._last_dot >= 1.0:
            self._last_dot = time.monotonic()
            self.stream.write(".")
        self.stream.flush()

    def done(self, message: str) -> None:
        if self.tty:
            self.stream.write(f"\r{message}".ljust(self._width) + "\n")
        else:
            self.stream.write(f" {message}\n")
        self.stream.flush()


def fail(reason: str) -> int:
    """The CLI's one error line on stderr; returns exit code 1."""
    print(f"jangbu: error: {reason}", file=sys.stderr)
    return 1


def command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command so a ``CliError`` prints one line and exits 1.

    ``cli.main.main`` does the same, but under ``python -m cli.main`` that module runs as
    ``__main__`` and its ``CliError`` is a different class from ``cli.main.CliError``.
    """
    from cli.errors import CliError

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except CliError as exc:
            return fail(str(exc))

    return wrapper


def subcommand_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The ``func`` of a command group run without its subcommand: that group's own help
    (not the top level's), exit code 2 as for any other usage error."""

    def func(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return func
