"""The one error type that user-facing commands turn into a one-line message and exit status 2."""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad user input: names the offending file (or argument) and the problem.

    ``str(err)`` is the single line a command prints, e.g. ``"scene.ply: no x/y/z vertex properties"``.
    """

    def __init__(self, source: str | os.PathLike | None, problem: str):
        self.source = None if source is None else os.fspath(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source else problem)
