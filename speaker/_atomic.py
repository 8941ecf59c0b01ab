"""Atomic output files: the one place where ``speaker`` writes a file.

Every output is written to a temporary file beside the target, fsynced, then renamed over it,
so a reader never sees a half-written file under the final name.  The rules (docs/reliability.md):

* an existing regular file is replaced only with ``overwrite=True`` (the command line's
  ``--overwrite``); without it the new file is linked into place (``os.link``, which fails if a
  file appeared meanwhile), so even a file created while the command ran is never replaced;
* nothing that is not a regular file is ever renamed over: a FIFO or a character device
  (``/dev/null``, ``/dev/stdout``, a terminal, a named pipe) is *written into*, as a shell
  redirection does, once the output is complete (it is written to a temporary file in the
  system's temporary folder first, then copied in; nothing is replaced); a folder, a block
  device or a socket is refused (:func:`output_problem`);
* a symbolic link is written through to its target (the link stays a link); an existing file
  keeps its permission bits; a descriptor the command was handed (``/dev/stdout``, ``/dev/fd/N``)
  is written into, after what its file already holds, whatever it is open on (a pipe, a
  terminal, a file of a shell redirection ``>`` or ``>>``), and needs no ``--overwrite``;
* several files that belong together (a Kaldi ``.ark`` and its ``.scp``) are written as a pair
  (:func:`atomic_paths`): all temporaries first, then renamed one after the other, and a failed
  rename puts back the files already replaced.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ._interrupt import check as check_interrupt
from ._interrupt import deferred

__all__ = ["WriteError", "atomic_path", "atomic_paths", "write_text_atomic", "output_problem", "write_ark_scp",
           "file_kind"]


class WriteError(OSError):
    """An output could not be written (disk full, permissions, an existing file...); the message
    names the file.  ``errno`` is the system's (``ENOSPC``...), or 0 for a refusal."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


_FD_LINK = re.compile(r"/(?:proc/(?:self|thread-self|[0-9]+)|dev)/fd/[0-9]+")


def _open_descriptor(path: Path) -> bool:
    """``path`` names a file descriptor the command was handed (``/dev/stdout``, ``/dev/fd/3``:
    links through ``/proc/self/fd/N``), whatever it is open on: a shell redirection's file, pipe
    or terminal.  Such an output is written into, at the end of what the descriptor's file holds
    (``>`` and ``>>`` both), never replaced."""
    p = Path(os.path.abspath(path))
    for _ in range(40):
        if _FD_LINK.fullmatch(str(p)):
            return True
        try:
            link = os.readlink(p)
        except OSError:
            return False
        p = Path(os.path.normpath(p.parent / link))
    return False


def _target(path: Path) -> Path:
    """The file a write to ``path`` replaces: a symbolic link is written through to its target.

    A link to a file descriptor (``/dev/stdout``), a pipe, a socket or a device is kept as it is:
    ``/dev/stdout`` into a pipe is ``/proc/self/fd/1``, whose target reads ``pipe:[N]``, a name no
    path can open; opening the link itself reaches the pipe."""
    if not path.is_symlink() or _open_descriptor(path):
        return path
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return path
    return Path(os.path.realpath(path))


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, for messages: "a regular file", "a FIFO", ..."""
    for test, what in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _streamed(path: Path) -> bool:
    """``path`` exists and is written into, not replaced: a FIFO, a character device, or a
    descriptor the command was handed (:func:`_open_descriptor`) open on a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or (stat.S_ISREG(mode) and _open_descriptor(path))


def output_problem(path: str | os.PathLike, overwrite: bool = False, *, streams: bool = True) -> str | None:
    """Why ``path`` cannot be written as an output, or None.

    A missing file, or a FIFO / character device (written into, with ``streams``), is fine; an
    existing regular file needs ``overwrite``; anything else (a folder, a block device, a socket,
    a broken or looping symbolic link) is refused.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if p.is_symlink():
            return f"{path} is a broken symbolic link"
        return None
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if stat.S_ISREG(st.st_mode):
        if streams and _open_descriptor(p):          # '--out /dev/stdout > file': written into
            return None
        return None if overwrite else f"{path} exists; give --overwrite to replace it"
    if streams and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        return None
    what = file_kind(st.st_mode)
    return f"{path} is {what}, not a file to write" + (" (an .ark and its .scp are regular files)"
                                                       if not streams and what in ("a FIFO", "a character device")
                                                       else "")


def _wrap(path, exc: OSError) -> WriteError:
    return WriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}")


def _new_temp(path: Path, suffix: str | None) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=(path.suffix if suffix is None else suffix)
                                   + ".tmp", dir=folder)
    except OSError as exc:
        raise _wrap(path, exc) from None
    os.close(fd)
    return Path(tmp)


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _install(tmp: Path, path: Path, overwrite: bool) -> None:
    """Put the finished ``tmp`` under the name ``path`` (see the module docstring)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise WriteError(0, str(output_problem(path, overwrite, streams=False)))
    if overwrite:
        os.replace(tmp, path)
        return
    if st is not None:                         # checked absent when the write began
        raise WriteError(17, f"{path} appeared while this command ran; give --overwrite to replace it")
    try:
        os.link(tmp, path)                     # fails if a file appeared meanwhile: never replaced
    except FileExistsError:
        raise WriteError(17, f"{path} appeared while this command ran; give --overwrite to replace it") from None
    except OSError:                            # a filesystem without hard links
        if os.path.lexists(path):
            raise WriteError(17, f"{path} appeared while this command ran; give --overwrite to replace it") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike], suffixes: Sequence[str | None] | None = None, *,
                 overwrite: bool = True, streams: bool = True) -> Iterator[list[Path]]:
    """Yield one path to write per target; on success the targets are replaced (or created).

    A target that is a FIFO or a character device (with ``streams``) is written into at the end
    (from a temporary file in the system's temporary folder).  Any other target gets a temporary
    file in its folder; an exception or an interrupt
    inside the block removes the temporaries and leaves every earlier target untouched.  The
    temporaries are then renamed one after the other; if a rename fails, the targets already
    replaced get their previous contents back (kept meanwhile under a hidden hard link).  Only a
    crash (SIGKILL, power loss) between two renames can leave a new file beside an old one.

    ``overwrite=False`` refuses an existing regular file, also one that appeared meanwhile.
    A failure to write (``ENOSPC``, ``EACCES``...) raises :class:`WriteError` naming the target.
    """
    targets = [_target(Path(p)) for p in paths]
    suffixes = list(suffixes) if suffixes is not None else [None] * len(targets)
    for t in targets:
        why = output_problem(t, overwrite, streams=streams)
        if why is not None:
            raise WriteError(17 if "exists" in why else 0, why)
    streamed = [streams and _streamed(t) for t in targets]
    temps: list[Path] = []
    try:
        for t, suffix, direct in zip(targets, suffixes, streamed):
            # a FIFO or device gets a temporary in the system's temporary folder (writers such as
            # numpy.savez seek, which a pipe or /dev/null does not support), copied in at the end;
            # an interrupt while the temporary is created is raised once it is in the list to remove
            with deferred():
                temps.append(_new_temp(Path(tempfile.gettempdir()) / t.name, suffix) if direct
                             else _new_temp(t, suffix))
        try:
            yield list(temps)
            check_interrupt()      # a swallowed Ctrl-C must not let the files replace the old ones
            for t, tmp, direct in zip(targets, temps, streamed):
                if direct:                 # appended to a descriptor's file: what '>' or '>>' left stays
                    with open(tmp, "rb") as src, open(t, "ab" if _open_descriptor(t) else "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    continue
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.chmod(tmp, _mode_for(t))        # mkstemp made 0600: the old file's (or the usual) mode
        except WriteError:
            raise
        except OSError as exc:
            raise _wrap(targets[0] if len(targets) == 1 else ", ".join(map(str, targets)), exc) from None
        _commit([(t, tmp) for t, tmp, direct in zip(targets, temps, streamed) if not direct], overwrite)
    except BaseException:
        with deferred():               # a second Ctrl-C does not cut the clean-up short
            for tmp in temps:
                with contextlib.suppress(OSError):
                    tmp.unlink()
        raise
    for tmp, direct in zip(temps, streamed):
        if direct:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _commit(pairs: list[tuple[Path, Path]], overwrite: bool) -> None:
    """Rename every temporary over its target; on a failure, put the replaced targets back."""
    if not pairs:
        return
    done: list[tuple[Path, Path | None]] = []          # targets installed, with their previous file
    current = pairs[0][0]
    try:
        for t, tmp in pairs:
            current = t
            backup = None
            if len(pairs) > 1 and os.path.isfile(t):
                backup = t.with_name(f".{t.name}.{os.getpid()}.previous")
                with contextlib.suppress(FileNotFoundError):
                    backup.unlink()
                os.link(t, backup)
            try:
                _install(tmp, t, overwrite)
            except BaseException:
                if backup is not None:
                    with contextlib.suppress(OSError):
                        backup.unlink()
                raise
            done.append((t, backup))
    except BaseException as exc:
        for t, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, t)
                else:
                    t.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise _wrap(current, exc) from None
        raise
    for _, backup in done:
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield the path to write for ``path``; on success it replaces (or creates) ``path``.

    :func:`atomic_paths` for one file.  ``suffix`` of the temporary defaults to the target's own
    (some writers, such as ``numpy.savez``, look at it).
    """
    with atomic_paths([path], [suffix], overwrite=overwrite) as (tmp,):
        yield tmp


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_ark_scp(ark: str | os.PathLike, items: Iterable[tuple[str, object]], *, overwrite: bool = True) -> Path:
    """A Kaldi archive ``ark`` and its index (``ark`` with suffix ``.scp``), written as a pair.

    ``items`` yields ``(key, array)``: float matrices or vectors (kaldiio's binary format).  Both
    files are written to temporaries; the index names ``ark`` as given.  Returns the index path.
    """
    import kaldiio
    ark = Path(ark)
    scp = ark.with_suffix(".scp")
    if scp == ark:
        raise WriteError(0, f"cannot write {ark}: the archive would be its own .scp index; name it NAME.ark")
    with atomic_paths([ark, scp], overwrite=overwrite, streams=False) as (tmp_ark, tmp_scp):
        with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
            for key, value in items:
                check_interrupt()
                writer(key, value)
        prefix = f"{tmp_ark}:"
        lines = []
        for line in tmp_scp.read_text(encoding="utf-8").splitlines():
            key, _, where = line.partition(" ")
            if not where.startswith(prefix):
                raise WriteError(0, f"cannot write {scp}: unexpected index line {line[:80]!r}")
            lines.append(f"{key} {ark}:{where[len(prefix):]}\n")
        tmp_scp.write_text("".join(lines), encoding="utf-8")
    return scp
