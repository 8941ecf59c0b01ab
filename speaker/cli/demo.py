"""``speaker demo``: the whole recipe on the bundled recordings."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from .. import _interrupt
from ._common import JobError, add_overwrite, check_outputs, say
from ._options import components

NAME = "demo"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(NAME, parents=[parents.run], help="run the whole recipe on the bundled recordings",
                       description="Train a UBM, enrol 6 speakers, score Kaldi- and VoxCeleb-style trials and print "
                                   "EER/minDCF, on the bundled Free Spoken Digit Dataset subset.")
    s.add_argument("--out", metavar="DIR", help="folder for the outputs (default: a new temporary folder)")
    add_overwrite(s, "--out's earlier outputs")
    s.add_argument("--components", type=components, default=64, metavar="K", help="UBM size (default 64)")
    s.set_defaults(func=run)


def fixtures_dir() -> Path:
    """Folder of the bundled audio fixtures and their lists (installed with the package)."""
    from importlib.resources import files
    p = Path(str(files("speaker") / "_fixtures"))
    if (p / "trials.txt").exists():
        return p
    p = Path(__file__).resolve().parents[2] / "audio_fixtures"
    if (p / "trials.txt").exists():
        return p
    raise JobError("the audio fixtures are not installed with this copy of speaker")


class _Renaming:
    """A text stream that writes ``old`` as ``new`` (every other attribute: the stream's own)."""

    def __init__(self, stream, old: str, new: str):
        self._stream, self._old, self._new = stream, old, new

    def write(self, text: str) -> int:
        return self._stream.write(text.replace(self._old, self._new))

    def __getattr__(self, name):
        return getattr(self._stream, name)


def run(args) -> int:
    """The other commands, in this process, through ``args.main`` (the entry point passes
    itself, so that this module need not import the package that imports it).

    The steps write into a hidden folder inside ``--out``; their five outputs then replace
    ``--out``'s as one set (:func:`speaker._atomic.atomic_paths`), so that an interrupted or
    failed demo leaves the earlier ones as they were, never a new UBM beside models of the old.
    What the steps print names the files where they end up, not the hidden folder."""
    import shutil
    from .._atomic import atomic_paths
    from ..features import FeatureConfig
    main = args.main
    fx = fixtures_dir()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="speaker-demo-"))
    outputs = ("features.json", "ubm.npz", "models.npz", "scores.txt", "scores_vox.txt")
    check_outputs(args, {f"--out ({name})": work / name for name in outputs})
    work.mkdir(parents=True, exist_ok=True)
    stage = None
    try:
        with _interrupt.deferred():    # an interrupt now is raised once the folder is recorded for removal
            stage = Path(tempfile.mkdtemp(prefix=".speaker-demo-", dir=work))
        cfg = stage / "features.json"
        cfg.write_text(FeatureConfig(sample_rate=8000).to_json(indent=2), encoding="utf-8")
        common = ["--jobs", str(args.jobs)] + (["--quiet"] if args.quiet else [])
        top_c = str(min(5, args.components))          # a top-C cannot exceed the UBM's components
        steps = [
            ["train-ubm", "--list", str(fx / "ubm.lst"), "--out", str(stage / "ubm.npz"),
             "--components", str(args.components), "--config", str(cfg)],
            ["enroll", "--ubm", str(stage / "ubm.npz"), "--enroll", str(fx / "enroll.txt"),
             "--out", str(stage / "models.npz")],
            ["score", "--ubm", str(stage / "ubm.npz"), "--models", str(stage / "models.npz"),
             "--trials", str(fx / "trials.txt"), "--out", str(stage / "scores.txt"), "--top-c", top_c],
            ["score", "--ubm", str(stage / "ubm.npz"), "--trials", str(fx / "trials_vox.txt"),
             "--out", str(stage / "scores_vox.txt"), "--top-c", top_c],
        ]
        for step in steps:
            say(args, "$ speaker " + " ".join(step).replace(str(stage), str(work)))   # the recipe, as a user runs it
            with contextlib.redirect_stderr(_Renaming(sys.stderr, str(stage), str(work))):
                rc = main(step + common)
            if rc in (130, 143):
                return rc              # the step's own line said so
            if rc != 0:
                raise JobError(f"demo step failed: speaker {step[0]}")
        with atomic_paths([work / name for name in outputs], overwrite=args.overwrite) as temps:
            for name, tmp in zip(outputs, temps):
                os.replace(stage / name, tmp)
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    for title, trials, scores in (("Kaldi-style trials (20 enrolment files per speaker)", "trials.txt", "scores.txt"),
                                  ("VoxCeleb-style trials (one enrolment file per model, same digit)", "trials_vox.txt",
                                   "scores_vox.txt")):
        print(f"\n== {title}: {fx / trials}")
        rc = main(["eval", "--scores", str(work / scores), "--trials", str(fx / trials)])
        if rc in (130, 143):
            return rc
    print(f"\noutputs in {work}")
    return 0
