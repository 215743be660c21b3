"""Console entry points. Each command lives in its own module; ``run_command`` gives them one error policy."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from mtml.errors import InputError


def run_command(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
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


def subcommand_main(prog: str, description: str, adders: Iterable[Callable], argv: Sequence[str] | None,
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
    return int_between(minimum, None)


def int_between(minimum: int, maximum: int | None) -> Callable[[str], int]:
    """An argparse ``type`` that accepts integers in [``minimum``, ``maximum``] (no upper bound for None) and
    explains what is wrong otherwise (argparse prints it and exits with status 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            wanted = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value

    return parse


#: argparse ``type``s for counts: integers >= 1 (scenes, epochs) and >= 0 (seeds, thread counts with 0 = default).
positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def positive_float_up_to(maximum: float) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number in (0, ``maximum``]; refuses nan, inf, 0, negatives and numbers
    over ``maximum`` (e.g. memory sizes that would overflow what is computed from them)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:.12g}, got {text!r}")
        return value

    return parse


#: argparse ``type`` for a finite number > 0 (sizes, lengths): refuses nan, inf, 0 and negatives.
positive_float = positive_float_up_to(math.inf)


class StageTimes:
    """Wall-clock seconds of one piece of work (e.g. one scan) per named stage, and in all.

    Work counts while inside ``running()`` blocks (a scan's work may come in several blocks, with other scans'
    work between them); ``stage(name)`` blocks (or ``add``) time its stages. ``summary()`` gives each stage,
    ``other`` (the time in ``running`` blocks no stage covered) and ``total``, so the parts add up to the total.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._wall = 0.0
        self._running_since: float | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Count the time inside this block as the work's."""
        self._running_since = time.perf_counter()
        try:
            yield
        finally:
            self._wall += time.perf_counter() - self._running_since
            self._running_since = None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time inside this block to stage ``name`` (call it inside ``running``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float, outside: bool = False) -> None:
        """Add ``seconds`` to stage ``name``; ``outside``: they were spent outside any ``running`` block (e.g.
        setup shared with other work, charged to this one), so they count in the total too."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        if outside:
            self._wall += seconds

    def summary(self, digits: int = 4) -> dict:
        """Stage -> seconds (rounded to ``digits``), then ``other`` and ``total`` (so far, when called inside a
        ``running`` block)."""
        total = self._wall + (time.perf_counter() - self._running_since if self._running_since is not None else 0.0)
        other = max(total - sum(self.seconds.values()), 0.0)
        return {name: round(value, digits) for name, value in {**self.seconds, "other": other, "total": total}.items()}
