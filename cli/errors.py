"""The CLI's one error type: a one-line reason for the user, exit code 1.

It lives in its own module so that ``python -m cli.main`` (where cli.main is ``__main__``)
and the command modules importing it share one class.
"""

from __future__ import annotations


class CliError(Exception):
    """A one-line reason shown to the user; exit code 1."""
