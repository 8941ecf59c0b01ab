"""Reading the recipe's list files: audio lists, enrolment lists, trials and scores.

Formats (blank lines and lines starting with ``#`` are ignored; a UTF-8 byte-order mark at the
start of the file is dropped; fields are separated by whitespace, or, on a line that contains
a TAB, by TABs only, so that a path with spaces is written ``utt_id<TAB>my file.wav``; a
relative path is resolved against ``root``, by default the list's folder):

* audio list: one ``path`` per line, or Kaldi ``wav.scp`` style ``utt_id path``.
* enrolment list: ``speaker_id path [path ...]`` (a speaker may span several lines).
* trials, Kaldi style: ``model_id test_path [target|nontarget]``.
* trials, VoxCeleb style: ``1|0 enrol_path test_path`` (the enrolment recording is the model).
* scores: ``model_id test_path score``.
* Kaldi data directory: ``wav.scp`` with ``utt2spk`` (``utt_id speaker_id``) or ``spk2utt``
  (``speaker_id utt_id [utt_id ...]``), :func:`read_kaldi_data`; a folder of per-speaker
  subfolders of audio files, :func:`read_speaker_folders`.

Anywhere a path is read, ``file.ark:OFFSET`` (a Kaldi feature archive entry, read with
kaldiio) and ``.npy`` feature files are accepted too; an ``scp`` mapping (``utt_id -> path``,
from :func:`read_scp`) lets trial and enrolment lists name utterances by id.
Every error names the file and the line.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from .limits import MAX_LIST_BYTES, MAX_LIST_LINE
from .sources import ark_entry

__all__ = ["ListError", "Trial", "read_audio_list", "read_enroll_list", "read_trials",
           "read_scores", "read_scp", "resolve", "format_line", "read_kaldi_data", "read_speaker_folders",
           "AUDIO_EXTENSIONS"]

#: File name endings taken as audio in a folder of speakers (formats libsndfile reads).
AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                              ".au", ".snd", ".w64", ".rf64", ".caf", ".sph"})


class ListError(ValueError):
    """A malformed list file; the message is ``FILE:LINE: reason``."""


@dataclass(frozen=True)
class Trial:
    """One verification trial.

    ``model`` is the model id (Kaldi style) or the enrolment path as written (VoxCeleb style);
    ``test`` is the test path as written; ``enrol`` is the resolved enrolment path (VoxCeleb
    style only); ``label`` is True (target), False (non-target) or None (not given).
    """

    model: str
    test: str
    test_path: str
    label: bool | None = None
    enrol_path: str | None = None


def _fields(line: str) -> list[str]:
    """Fields of a stripped line: TAB-separated if it has a TAB (paths may hold spaces), else split
    on whitespace."""
    if "\t" in line:
        return [f.strip() for f in line.split("\t") if f.strip()]
    return line.split()


def _lines(path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank, non-comment lines; read with a bound (at most
    :data:`~speaker.limits.MAX_LIST_BYTES`, lines of at most :data:`~speaker.limits.MAX_LIST_LINE`),
    so that a device such as ``/dev/zero`` or a huge file is one line of error, never read to its end."""
    try:
        with open(path, encoding="utf-8-sig") as f:     # -sig: a byte-order mark is dropped
            total = 0
            n = 0
            while line := f.readline(MAX_LIST_LINE + 1):
                n += 1
                total += len(line)
                if len(line) > MAX_LIST_LINE:
                    raise ListError(f"{path}:{n}: line longer than {MAX_LIST_LINE} characters (not a list?)")
                if total > MAX_LIST_BYTES:
                    raise ListError(f"{path}: longer than {MAX_LIST_BYTES >> 20} MiB (not a list?)")
                s = line.strip()
                if s and not s.startswith("#"):
                    yield n, _fields(s)
    except UnicodeDecodeError as exc:
        raise ListError(f"{path}: not a text file ({exc.reason})") from None
    except OSError as exc:
        raise ListError(f"{path}: cannot read list: {exc.strerror or exc}") from None


def resolve(token: str, root: str | os.PathLike, scp: Mapping[str, str] | None = None) -> str:
    """The file (or ``ark:offset`` spec) a list token refers to."""
    if scp is not None and token in scp:
        return scp[token]
    if token.endswith("|") or token.startswith("|"):
        raise ValueError("piped commands (Kaldi 'cmd |' entries) are not supported; extract the audio first")
    entry = ark_entry(token)
    if entry is not None:
        ark, offset = entry
        return (ark if os.path.isabs(ark) else str(Path(root) / ark)) + ":" + offset
    return token if os.path.isabs(token) else str(Path(root) / token)


def _root(path, root) -> Path:
    return Path(root) if root is not None else Path(path).resolve().parent


def read_scp(path, root=None) -> dict[str, str]:
    """Kaldi ``wav.scp`` / ``feats.scp``: ``utt_id path`` per line -> {utt_id: resolved path}."""
    r = _root(path, root)
    out: dict[str, str] = {}
    for n, f in _lines(path):
        if len(f) != 2:
            raise ListError(f"{path}:{n}: expected 'utt_id path', got {len(f)} fields")
        if f[0] in out:
            raise ListError(f"{path}:{n}: duplicate utterance id {f[0]!r}")
        try:
            out[f[0]] = resolve(f[1], r)
        except ValueError as exc:
            raise ListError(f"{path}:{n}: {exc}") from None
    return out


def read_audio_list(path, root=None) -> list[tuple[str, str]]:
    """Audio list -> [(key, resolved path)]; key is the utt_id (scp style) or the path as written."""
    r = _root(path, root)
    out = []
    for n, f in _lines(path):
        if len(f) not in (1, 2):
            raise ListError(f"{path}:{n}: expected 'path' or 'utt_id path', got {len(f)} fields")
        try:
            out.append((f[0], resolve(f[-1], r)))
        except ValueError as exc:
            raise ListError(f"{path}:{n}: {exc}") from None
    if not out:
        raise ListError(f"{path}: the list is empty")
    return out


def read_enroll_list(path, root=None, scp=None) -> dict[str, list[tuple[str, str]]]:
    """Enrolment list -> {speaker_id: [(token, resolved path), ...]} in file order."""
    r = _root(path, root)
    out: dict[str, list[tuple[str, str]]] = {}
    for n, f in _lines(path):
        if len(f) < 2:
            raise ListError(f"{path}:{n}: expected 'speaker_id path [path ...]', got {len(f)} field")
        try:
            out.setdefault(f[0], []).extend((t, resolve(t, r, scp)) for t in f[1:])
        except ValueError as exc:
            raise ListError(f"{path}:{n}: {exc}") from None
    if not out:
        raise ListError(f"{path}: the list is empty")
    return out


_KALDI_LABELS = {"target": True, "nontarget": False}


def read_trials(path, root=None, scp=None) -> tuple[str, list[Trial]]:
    """Trials -> (format, trials); format "kaldi" or "voxceleb", detected from the first line."""
    r = _root(path, root)
    fmt = None
    trials: list[Trial] = []
    for n, f in _lines(path):
        this = "voxceleb" if (len(f) == 3 and f[0] in ("0", "1") and f[2] not in _KALDI_LABELS) else "kaldi"
        fmt = fmt or this
        try:
            if fmt == "voxceleb":
                if len(f) != 3 or f[0] not in ("0", "1"):
                    raise ValueError("expected VoxCeleb-style '1|0 enrol_path test_path' like the first line")
                trials.append(Trial(f[1], f[2], resolve(f[2], r, scp), f[0] == "1", resolve(f[1], r, scp)))
            else:
                if len(f) not in (2, 3):
                    raise ValueError(f"expected 'model_id test_path [target|nontarget]', got {len(f)} fields")
                if len(f) == 3 and f[2] not in _KALDI_LABELS:
                    raise ValueError(f"label must be 'target' or 'nontarget', got {f[2]!r}")
                trials.append(Trial(f[0], f[1], resolve(f[1], r, scp),
                                    _KALDI_LABELS[f[2]] if len(f) == 3 else None))
        except ValueError as exc:
            raise ListError(f"{path}:{n}: {exc}") from None
    if not trials:
        raise ListError(f"{path}: no trials")
    seen: dict[tuple[str, str], int] = {}
    for n, t in zip((n for n, _ in _lines(path)), trials):
        first = seen.setdefault((t.model, t.test), n)
        if first != n:
            raise ListError(f"{path}:{n}: duplicate trial '{t.model} {t.test}' (first on line {first})")
    return fmt, trials


def format_line(*fields: str) -> str:
    """One list line: fields joined by spaces, or by TABs when one of them holds whitespace
    (the form the readers split on TABs)."""
    sep = "\t" if any(any(c.isspace() for c in f) for f in fields) else " "
    return sep.join(fields)


def read_scores(path) -> dict[tuple[str, str], float]:
    """Score file -> {(model_id, test_path): score}."""
    out = {}
    for n, f in _lines(path):
        if len(f) != 3:
            raise ListError(f"{path}:{n}: expected 'model_id test_path score', got {len(f)} fields")
        try:
            s = float(f[2])
        except ValueError:
            raise ListError(f"{path}:{n}: score {f[2]!r} is not a number") from None
        if not math.isfinite(s):
            raise ListError(f"{path}:{n}: score {f[2]!r} is not finite")
        if (f[0], f[1]) in out:
            raise ListError(f"{path}:{n}: duplicate trial {f[0]} {f[1]}")
        out[(f[0], f[1])] = s
    return out


def _pairs(path, what: str) -> Iterator[tuple[int, list[str]]]:
    for n, f in _lines(path):
        if len(f) < 2:
            raise ListError(f"{path}:{n}: expected {what}, got {len(f)} field")
        yield n, f


def read_kaldi_data(folder, root=None) -> tuple[dict[str, list[tuple[str, str]]], dict[str, str]]:
    """A Kaldi data directory -> ``({speaker: [(utt_id, path), ...]}, {utt_id: why skipped})``.

    Reads ``wav.scp`` (paths resolved against ``root``, by default the directory) and the
    speakers from ``utt2spk``, else ``spk2utt``.  Utterances are in ``wav.scp`` order; an
    utterance without a speaker, or a speaker's utterance missing from ``wav.scp``, is skipped
    with a reason.  A directory with a ``segments`` file (utterances cut from longer recordings)
    is refused: extract the segments first.
    """
    d = Path(folder)
    if (d / "segments").exists():
        raise ListError(f"{d / 'segments'}: utterances are segments of the wav.scp recordings; "
                        "not supported: extract the segments to files first")
    scp = read_scp(d / "wav.scp", root if root is not None else d)
    spk_of: dict[str, str] = {}
    if (d / "utt2spk").exists():
        for n, f in _pairs(d / "utt2spk", "'utt_id speaker_id'"):
            if len(f) != 2:
                raise ListError(f"{d / 'utt2spk'}:{n}: expected 'utt_id speaker_id', got {len(f)} fields")
            if spk_of.setdefault(f[0], f[1]) != f[1]:
                raise ListError(f"{d / 'utt2spk'}:{n}: utterance {f[0]!r} has two speakers")
    elif (d / "spk2utt").exists():
        for n, f in _pairs(d / "spk2utt", "'speaker_id utt_id [utt_id ...]'"):
            for u in f[1:]:
                if spk_of.setdefault(u, f[0]) != f[0]:
                    raise ListError(f"{d / 'spk2utt'}:{n}: utterance {u!r} has two speakers")
    else:
        raise ListError(f"{d}: no utt2spk nor spk2utt (which speaker said each utterance)")
    out: dict[str, list[tuple[str, str]]] = {}
    skipped: dict[str, str] = {}
    for u, path in scp.items():
        if u in spk_of:
            out.setdefault(spk_of[u], []).append((u, path))
        else:
            skipped[u] = "no speaker in utt2spk/spk2utt"
    for u in spk_of:
        if u not in scp:
            skipped[u] = "not in wav.scp"
    if not out:
        raise ListError(f"{d}: no utterance of wav.scp has a speaker")
    return out, skipped


def read_speaker_folders(folder) -> tuple[dict[str, list[str]], int]:
    """A folder of per-speaker subfolders -> ``({speaker: [audio files, sorted]}, other files)``.

    A speaker is a subfolder (its name is the id); its recordings are the files below it, at any
    depth, whose name ends in one of :data:`AUDIO_EXTENSIONS` (any case), in sorted path order;
    ``other files`` counts the files that are not.  Files directly in ``folder`` belong to no one
    and are counted as other files.  Paths are absolute.
    """
    d = Path(folder)
    if not d.is_dir():
        raise ListError(f"{d}: not a folder")
    out: dict[str, list[str]] = {}
    other = 0
    for entry in sorted(d.iterdir()):
        if not entry.is_dir():
            other += 1
            continue
        files = []
        for f in sorted(entry.rglob("*")):
            if f.is_file():
                if f.suffix.lower() in AUDIO_EXTENSIONS:
                    files.append(os.path.abspath(f))
                else:
                    other += 1
        if files:
            out[entry.name] = files
    if not out:
        raise ListError(f"{d}: no subfolder holds audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return out, other
