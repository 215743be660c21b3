"""Console entry points. Each command lives in its own module; ``run_command`` gives them one error policy."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Iterable, Optional, Sequence

from mtml.errors import InputError


def run_command(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Run a command's ``main(argv)``; turn an InputError into one line on stderr and exit status 2."""
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "mtml"
    try:
        return int(main(argv) or 0)
    except InputError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def subcommand_main(prog: str, description: str, adders: Iterable[Callable], argv: Optional[Sequence[str]],
                    metavar: str = "COMMAND") -> int:
    """Build a parser with one subparser per ``adders`` entry (each adds its subparser and sets ``handler``),
    parse ``argv`` and run the chosen handler; returns its exit status."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subparsers = parser.add_subparsers(dest="command", metavar=metavar, required=True)
    for add in adders:
        add(subparsers)
    args = parser.parse_args(argv)
    return int(args.handler(args))


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` that accepts integers >= ``minimum`` and explains what is wrong otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse
