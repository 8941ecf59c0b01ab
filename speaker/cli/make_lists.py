"""``speaker lists``: the UBM list, enrolment list and development trials from a folder of
per-speaker subfolders or a Kaldi data directory, with the split written down."""
from __future__ import annotations

from .._reasons import report_skipped
from ._common import JobError, say
from ._options import count, float_option, int_option

NAME = "lists"


def add_parser(sub, parents) -> None:
    s = sub.add_parser(
        NAME, parents=[parents.root], help="make UBM, enrolment and trial lists from your recordings",
        description="Split the speakers of --folder (one subfolder of audio files per speaker) or --kaldi (a Kaldi "
                    "data directory: wav.scp with utt2spk or spk2utt) into UBM speakers and development speakers "
                    "(and evaluation speakers with --eval-fraction), reproducibly from --seed. Writes to --out: "
                    "ubm.lst, enroll.txt, trials.txt (Kaldi style 'model test target|nontarget'), trials_vox.txt "
                    "(VoxCeleb style '1|0 enrol test', the model's first enrolment recording), the same with _eval "
                    "for evaluation speakers, and split.json: which speakers and recordings went where, the seed "
                    "and the settings. Speakers with too few recordings to be enrolled and tested go to the UBM.")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", metavar="DIR", help="a folder with one subfolder of audio files per speaker "
                                                     "(the subfolder's name is the speaker id)")
    src.add_argument("--kaldi", metavar="DIR", help="a Kaldi data directory (wav.scp, and utt2spk or spk2utt)")
    s.add_argument("--out", required=True, metavar="DIR", help="folder to write the lists to (created if needed)")
    s.add_argument("--seed", type=count, default=0, metavar="N", help="seed of the random split (default 0)")
    s.add_argument("--ubm-fraction", type=float_option(0.0, 1.0, hi_open=True), default=0.5, metavar="F",
                   help="fraction of the speakers (with enough recordings) that train the UBM, in [0, 1) (default 0.5)")
    s.add_argument("--eval-fraction", type=float_option(0.0, 1.0, hi_open=True), default=0.0, metavar="F",
                   help="fraction held out as evaluation speakers (lists with _eval), in [0, 1) (default 0: none)")
    s.add_argument("--enroll-recordings", type=int_option(1, 10_000), default=3, metavar="N",
                   help="enrolment recordings per speaker (default 3); the others are its tests")
    s.add_argument("--max-tests", type=int_option(1), metavar="N", help="tests per speaker at most (default: all)")
    s.add_argument("--nontargets-per-test", type=int_option(1), metavar="N",
                   help="non-target models per test, drawn at random (default: every other speaker of the group)")
    s.add_argument("--overwrite", action="store_true", help="let the lists replace existing files in --out")
    s.add_argument("--quiet", action="store_true", help="no summary")
    s.set_defaults(func=run)


def run(args) -> int:
    import os
    from pathlib import Path

    from .. import _guards
    from .._atomic import write_text_atomic
    from ..lists import AUDIO_EXTENSIONS, read_kaldi_data, read_speaker_folders
    from ..protocol import make_protocol
    skipped: dict[str, str] = {}
    if args.kaldi:
        recordings, skipped = read_kaldi_data(args.kaldi, args.root)
        inputs = [(what, os.path.join(args.kaldi, what)) for what in ("wav.scp", "utt2spk", "spk2utt")]
        source = os.path.abspath(args.kaldi)
    else:
        folders, other = read_speaker_folders(args.folder)
        recordings = {s: [(p, p) for p in files] for s, files in folders.items()}
        inputs = [("audio file", p) for files in folders.values() for p in files]
        source = os.path.abspath(args.folder)
        if other:
            say(args, f"{other} file(s) in {args.folder} are not audio ({', '.join(sorted(AUDIO_EXTENSIONS))}) "
                      "and were left out")
    try:
        proto = make_protocol(recordings, seed=args.seed, ubm_fraction=args.ubm_fraction,
                              eval_fraction=args.eval_fraction, n_enrol=args.enroll_recordings,
                              max_tests=args.max_tests, nontargets_per_test=args.nontargets_per_test)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    files = proto.files(source, ubm_keys=bool(args.kaldi))
    out = Path(args.out)
    paths = {f"{name} in --out": str(out / name) for name in files}
    _guards.refuse_inputs_as_outputs(paths, inputs)
    _guards.refuse_existing_outputs(paths, args.overwrite)
    for name, text in files.items():            # split.json last: it names the lists written before it
        write_text_atomic(out / name, text)
    report_skipped(skipped, "utterance")
    report_skipped(proto.skipped, "speaker")
    sp = proto.speakers
    parts = [f"UBM {len(sp['ubm']) + len(sp['ubm_too_few_recordings'])} speakers ({len(proto.ubm)} recordings"
             + (f"; {len(sp['ubm_too_few_recordings'])} with too few recordings to be enrolled and tested)"
                if sp["ubm_too_few_recordings"] else ")")]
    for g in proto.enrol:
        t, n = proto.counts(g)
        parts.append(f"{g} {len(sp[g])} speakers ({args.enroll_recordings} enrolment recordings each, "
                     f"{sum(len(v) for v in proto.tests[g].values())} tests, {t} target and {n} non-target trials)")
    say(args, f"seed {args.seed}: " + "; ".join(parts) + f" -> {out}/ ({', '.join(files)})")
    return 0

