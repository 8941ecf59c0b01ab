"""A development protocol from your own recordings: which speakers train the UBM, which are
enrolled and tested, and the trials (``speaker lists``).

:func:`make_protocol` takes ``{speaker: [(key, path), ...]}`` (from
:func:`speaker.lists.read_speaker_folders` or :func:`speaker.lists.read_kaldi_data`) and splits it
by :data:`RULE`, reproducibly from a seed (``random.Random(seed)``, stable across Python versions).

:meth:`Protocol.files` gives the list files' text (Kaldi-style trials ``model test
target|nontarget``; VoxCeleb-style ``1|0 enrol test`` with the model speaker's first enrolment
recording, VoxCeleb's one-recording enrolment) and ``split.json``, which writes all of the above
down.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .lists import format_line

__all__ = ["Protocol", "make_protocol", "FORMAT", "RULE"]

FORMAT = "gmmext-speaker-lists"
#: The split, in words (written into ``split.json``).
RULE = (
    "1. Speakers whose id is not a valid speaker id (no whitespace, printable, at most 256 characters) are left "
    "out. 2. Speakers with fewer than enroll_recordings + 1 recordings cannot be enrolled and tested: they go to "
    "the UBM. 3. The others, sorted by id, are shuffled by random.Random(seed); the first round(ubm_fraction * n) go "
    "to the UBM, the next round(eval_fraction * n) to evaluation, the rest to development (at least 2). 4. For each "
    "development then evaluation speaker, in id order, its recordings (in listed order) are shuffled: the first "
    "enroll_recordings enrol it, the rest (at most max_tests, in listed order) are its tests. 5. Every test is "
    "tried against every model of its group (a target trial against its own speaker), or against its own and "
    "nontargets_per_test others drawn at random. VoxCeleb-style trials use the model speaker's first enrolment "
    "recording.")


@dataclass
class Protocol:
    """A split of speakers and recordings (see the module docstring).

    ``ubm``: audio-list entries ``(key, path)``; ``enrol`` / ``tests``: per group ("dev",
    "eval") ``{speaker: [(key, path), ...]}``; ``trials``: per group ``[(model, test path,
    target?)]``; ``speakers``: the speaker ids of each role; ``skipped``: speakers left out.
    """

    seed: int
    settings: dict
    ubm: list[tuple[str, str]] = field(default_factory=list)
    enrol: dict[str, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)
    tests: dict[str, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)
    trials: dict[str, list[tuple[str, str, bool]]] = field(default_factory=dict)
    speakers: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def counts(self, group: str) -> tuple[int, int]:
        """(target, non-target) trials of a group."""
        t = sum(1 for *_, lab in self.trials.get(group, []) if lab)
        return t, len(self.trials.get(group, [])) - t

    def files(self, source: str, ubm_keys: bool) -> dict[str, str]:
        """``{file name: text}``: ``ubm.lst``, and per group ``enroll.txt``, ``trials.txt``,
        ``trials_vox.txt`` (``_eval`` before the extension for the evaluation group), then
        ``split.json``.  ``ubm_keys``: write ``key path`` lines in the UBM list (utterance ids)."""
        out = {"ubm.lst": "".join(format_line(*((k, p) if ubm_keys else (p,))) + "\n" for k, p in self.ubm)}
        for g in self.enrol:
            tag = "" if g == "dev" else f"_{g}"
            first = {s: rec[0][1] for s, rec in self.enrol[g].items()}
            out[f"enroll{tag}.txt"] = "".join(format_line(s, *(p for _, p in rec)) + "\n"
                                             for s, rec in self.enrol[g].items())
            out[f"trials{tag}.txt"] = "".join(format_line(m, t, "target" if lab else "nontarget") + "\n"
                                              for m, t, lab in self.trials[g])
            out[f"trials{tag}_vox.txt"] = "".join(format_line("1" if lab else "0", first[m], t) + "\n"
                                                  for m, t, lab in self.trials[g])
        names = list(out)
        out["split.json"] = json.dumps({
            "format": FORMAT, "version": 1, "source": source, "seed": self.seed, "settings": self.settings,
            "rule": RULE,
            "speakers": self.speakers, "skipped_speakers": self.skipped,
            "enrol": {g: {s: [p for _, p in rec] for s, rec in e.items()} for g, e in self.enrol.items()},
            "tests": {g: {s: [p for _, p in rec] for s, rec in e.items()} for g, e in self.tests.items()},
            "trials": {g: dict(zip(("target", "nontarget"), self.counts(g))) for g in self.trials},
            "files": names}, indent=1) + "\n"
        return out


def make_protocol(recordings: Mapping[str, Sequence[tuple[str, str]]], *, seed: int = 0,
                  ubm_fraction: float = 0.5, eval_fraction: float = 0.0, n_enrol: int = 3,
                  max_tests: int | None = None, nontargets_per_test: int | None = None) -> Protocol:
    """Split ``{speaker: [(key, path), ...]}`` into a UBM list, enrolments and trials.

    Parameters
    ----------
    recordings : every speaker's recordings, ``(key, path)`` in a fixed order
    seed : the seed of ``random.Random`` (same seed and input: same split)
    ubm_fraction, eval_fraction : fractions of the speakers with enough recordings that go to
        the UBM and to evaluation (the rest: development); ``ubm_fraction + eval_fraction < 1``
    n_enrol : enrolment recordings per development / evaluation speaker (>= 1)
    max_tests : tests per speaker at most (None: every other recording)
    nontargets_per_test : non-target models per test, drawn (None: every other model)

    Raises ValueError (the reason) when fewer than 2 development speakers (or evaluation
    speakers, if any are asked for) remain.
    """
    from .store import check_speaker_id
    if not (0 <= ubm_fraction < 1 and 0 <= eval_fraction < 1 and ubm_fraction + eval_fraction < 1):
        raise ValueError(f"fractions must be in [0, 1) with a sum below 1, got ubm {ubm_fraction}, eval {eval_fraction}")
    if n_enrol < 1 or (max_tests is not None and max_tests < 1) or (nontargets_per_test is not None
                                                                     and nontargets_per_test < 1):
        raise ValueError("n_enrol, max_tests and nontargets_per_test must be >= 1")
    rng = random.Random(seed)
    proto = Protocol(seed, dict(ubm_fraction=ubm_fraction, eval_fraction=eval_fraction, enroll_recordings=n_enrol,
                                max_tests=max_tests, nontargets_per_test=nontargets_per_test))
    usable, few = [], []
    for spk in sorted(recordings):
        try:
            check_speaker_id(spk)
        except ValueError as exc:
            proto.skipped[spk] = str(exc)
            continue
        (usable if len(recordings[spk]) > n_enrol else few).append(spk)
    rng.shuffle(usable)
    n = len(usable)
    n_ubm, n_eval = round(ubm_fraction * n), round(eval_fraction * n)
    groups = {"dev": sorted(usable[n_ubm + n_eval:]), "eval": sorted(usable[n_ubm:n_ubm + n_eval])}
    for g, spk in groups.items():
        if (g == "dev" or eval_fraction > 0) and len(spk) < 2:
            raise ValueError(f"{len(spk)} {g} speaker(s): need at least 2 speakers with more than {n_enrol} "
                             f"recordings each ({n} have, {n_ubm} of them for the UBM{f', {n_eval} for eval' if n_eval else ''})")
    proto.speakers = {"ubm": sorted(usable[:n_ubm]), "ubm_too_few_recordings": few, **groups}
    proto.ubm = [r for s in sorted(proto.speakers["ubm"] + few) for r in recordings[s]]
    for g, spk in groups.items():
        if not spk:
            continue
        proto.enrol[g], proto.tests[g] = {}, {}
        for s in spk:
            order = list(range(len(recordings[s])))
            rng.shuffle(order)
            chosen = sorted(order[:n_enrol])
            rest = sorted(order[n_enrol:])[:max_tests]
            proto.enrol[g][s] = [recordings[s][i] for i in chosen]
            proto.tests[g][s] = [recordings[s][i] for i in rest]
        trials = []
        for s in spk:
            for _, test in proto.tests[g][s]:
                others = [m for m in spk if m != s]
                if nontargets_per_test is not None and nontargets_per_test < len(others):
                    others = sorted(rng.sample(others, nontargets_per_test))
                trials += [(m, test, m == s) for m in sorted([s, *others])]
        proto.trials[g] = trials
    return proto
