"""Atomic file output: write to a temporary file beside the target, then rename over it.

A crash or an error half-way leaves either the old file or nothing, never a partial file. ``staged_outputs`` does
the same for a group of files (all outputs of one scan): they are written into hidden staging folders beside their
destinations and moved into place together, so the group is there whole or not at all.
``check_output_folder`` / ``check_output_file`` tell before any work whether an output can be written at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mtml.errors import InputError

STAGING_PREFIX = ".mtml-staging-"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``target``.

    Use it for writers that want a file name (``torch.save``, ``h5py.File``, ``PlyData.write``).
    On an exception the temporary file is removed and the target is left untouched. An OSError that names no file
    or the temporary one (a full disk while writing) is raised again naming ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; outputs get the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(err, OSError) and err.filename in (None, tmp, str(tmp_path)):
            # OSError(errno, ...) builds the matching subclass (e.g. FileNotFoundError) again
            raise OSError(err.errno, err.strerror or str(err), str(target)) from err
        raise


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder a new output would be created under)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_can_create_in(path: Path, folder: Path, option: str) -> None:
    """InputError naming ``path`` unless a file can be created in ``folder`` (or, when it does not exist yet, in
    the closest existing folder above it, where it would be created): tried for real with a probe file, which is
    removed at once (``os.access`` says yes to root, and on read-only mounts)."""
    place = _nearest_existing(folder)
    if not place.is_dir():
        raise InputError(path, f"cannot be created: {place} is a file, not a folder ({option})")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mtml-write-check-", dir=place)
    except OSError as err:
        raise InputError(path, f"not writable: cannot create files in {place} ({err.strerror or err}) "
                               f"({option})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> None:
    """Check, before any work, that ``path`` can take a command's output files: an existing writable folder, or a
    folder that can be created. Creates nothing. InputError(path, problem) for an existing non-folder (e.g. a
    regular file) or an unwritable place; ``option`` names the command-line option in the message."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, f"exists and is not a folder ({option} names an output folder)")
    _check_can_create_in(path, path, option)


def check_output_file(path: str | os.PathLike, option: str = "--output-file") -> None:
    """Check, before any work, that the file ``path`` can be written (atomically: a new file in its folder, then
    renamed over it). Creates nothing. InputError(path, problem) when it is a folder or its folder is not
    writable; ``option`` names the command-line option in the message."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, f"is a folder ({option} names a file to write)")
    _check_can_create_in(path, Path(os.path.abspath(path)).parent, option)


class OutputStage:
    """Staging folders of one group of outputs, one per destination folder (see ``staged_outputs``)."""

    def __init__(self) -> None:
        self._staging: dict[Path, Path] = {}  # destination folder -> its staging folder inside it
        self._created: list[Path] = []  # destination folders this stage created, outermost first

    def folder(self, destination: str | os.PathLike) -> Path:
        """The staging folder for files bound for the folder ``destination`` (created with it if needed): write
        them there under their final names (sub-folders allowed); they move to ``destination`` on commit."""
        destination = Path(destination)
        if destination not in self._staging:
            missing = [p for p in [destination, *destination.parents] if not p.exists()]
            destination.mkdir(parents=True, exist_ok=True)
            self._created += [p for p in reversed(missing) if p not in self._created]
            self._staging[destination] = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=destination)).absolute()
        return self._staging[destination]

    def final_path(self, path: str | os.PathLike) -> Path:
        """Where a file written under a staging folder ends up (other paths unchanged)."""
        path = Path(os.path.abspath(path))
        for destination, staging in self._staging.items():
            if path == staging or staging in path.parents:
                return destination / path.relative_to(staging)
        return path

    def commit(self) -> list[Path]:
        """Move every staged file to its destination (replacing files of the same name) and remove the staging
        folders. If a move fails, the files already moved are removed again. Returns the final paths."""
        moved: list[Path] = []
        try:
            for destination, staging in self._staging.items():
                for folder, _, names in os.walk(staging):
                    for name in sorted(names):
                        source = Path(folder) / name
                        target = destination / source.relative_to(staging)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(source, target)
                        moved.append(target)
        except BaseException:
            for target in moved:
                with contextlib.suppress(OSError):
                    target.unlink()
            raise
        finally:
            self.discard()
        return moved

    def discard(self) -> None:
        """Remove the staging folders with whatever they hold, and the destination folders this stage created
        when they are left empty. (``final_path`` still maps staged paths afterwards, for error messages.)"""
        for staging in self._staging.values():
            shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        self._created.clear()


@contextlib.contextmanager
def staged_outputs(what: str = "these outputs", source: str | None = None) -> Iterator[OutputStage]:
    """Write a group of files all or nothing: yields an ``OutputStage``; write each file under
    ``stage.folder(destination)``. When the block ends normally every file moves into place; on any exception
    nothing of the group is left (no partial files, no staging folders, no folders it created). An OSError while
    writing or moving (a full disk, no permission) becomes an InputError naming the file (its final path) and the
    problem, and saying that ``what`` (e.g. "the outputs of scene0000_00") was not written."""
    stage = OutputStage()
    try:
        yield stage
        stage.commit()
    except OSError as err:
        stage_file = stage.final_path(err.filename) if err.filename else None
        stage.discard()
        raise InputError(stage_file or source, f"cannot write: {err.strerror or err} (none of {what} were "
                                               "written)") from err
    except BaseException:
        stage.discard()
        raise
