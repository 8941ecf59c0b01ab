"""The ``speaker`` command line: the GMM-UBM recipe on lists of audio files.

    speaker train-ubm --list ubm.lst --out ubm.npz --components 64
    speaker enroll    --ubm ubm.npz --enroll enroll.txt --out models.npz
    speaker score     --ubm ubm.npz --models models.npz --trials trials.txt --out scores.txt
    speaker eval      --scores scores.txt --trials trials.txt
    speaker demo      # all of the above on the bundled audio fixtures

Exit codes: 0 success, 1 the job failed (message on stderr, no traceback), 2 bad usage.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import _guards, _interrupt
from ._atomic import WriteError, write_text_atomic
from .adapt import map_adapt
from .featstore import FeatureStore
from .features import FeatureConfig
from .lists import ListError, format_line, read_audio_list, read_enroll_list, read_scores, read_scp, read_trials
from .model_io import ModelError, load_model, load_speakers, save_model
from .scoring import score_trials
from .ubm import train_ubm


class JobError(Exception):
    """The job cannot produce a useful result (exit code 1)."""


def _say(args, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr)


def _progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _report_skipped(args, errors: dict, what: str = "file") -> None:
    _guards.report_skipped(errors, what, root=_guards.list_root(args))


def _check_strict(args, errors: dict) -> None:
    if errors and args.strict:
        raise JobError(f"--strict: {len(errors)} input(s) could not be used")


def _store(args, config: FeatureConfig, dim: int | None = None) -> FeatureStore:
    return FeatureStore(config, cache_dir=args.cache, jobs=args.jobs, progress=_progress(args), dim=dim)


def _feature_config(args) -> FeatureConfig:
    config = FeatureConfig()
    if args.config:
        try:
            config = FeatureConfig.from_json(_guards.read_small_text(args.config))
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            raise JobError(f"{args.config}: bad feature configuration: {exc}") from None
    if args.sample_rate is not None:
        changes = {"sample_rate": args.sample_rate}
        if config.fmax is not None and config.fmax > args.sample_rate / 2:
            changes["fmax"] = None
        config = dataclasses.replace(config, **changes)
    return config


def _load_ubm(path):
    mf = load_model(path)
    if mf.kind != "ubm":
        raise JobError(f"{path}: holds speaker models, not a UBM")
    return mf.ubm, (mf.config or FeatureConfig())


# ---------------------------------------------------------------------------- commands
def cmd_train_ubm(args) -> int:
    """Train a UBM: features on this machine (in memory, or streamed from disk beyond
    ``--stream-above``) or on Dask workers; a checkpoint after every EM pass, ``--resume``."""
    import contextlib
    import os
    import shutil
    from .ubm import CheckpointError, DaskFeatures, _is_audio, dask_client, prepare_features, read_checkpoint
    config = _feature_config(args)
    entries = read_audio_list(args.list, args.root)
    sources = list(dict.fromkeys(p for _, p in entries))
    out = Path(args.out)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out.with_name(out.stem + ".ckpt.npz")
    if checkpoint.resolve() == out.resolve():
        raise JobError("--checkpoint must differ from --out")
    _guards.refuse_inputs_as_outputs({"--out": out, "--checkpoint": checkpoint},
                                     [("list", args.list), ("config", args.config)]
                                     + [("listed file", s) for s in sources])
    if args.resume and not checkpoint.exists():
        _say(args, f"no checkpoint {checkpoint}: starting from the beginning")
    distributed = bool(args.scheduler or args.dask_workers)
    if args.scheduler and args.stream and not args.cache and any(map(_is_audio, sources)):
        raise JobError("--stream on a Dask cluster needs --cache DIR on a filesystem the workers share "
                       "(or a list of .npy / Kaldi ark features)")
    temp_cache = None
    try:
        with contextlib.ExitStack() as stack:
            if distributed:
                client = stack.enter_context(dask_client(args.scheduler, args.dask_workers))
                cache = args.cache
                if args.stream and not cache and any(map(_is_audio, sources)):
                    import tempfile
                    cache = temp_cache = tempfile.mkdtemp(prefix=".speaker-features-", dir=out.parent)
                absolute = {os.path.abspath(s): s for s in sources}       # workers may have another cwd
                feats, errors = DaskFeatures.from_sources(client, list(absolute), config, cache_dir=cache,
                                                          stream=args.stream, progress=_progress(args))
                errors = {absolute[s]: why for s, why in errors.items()}
                if feats is not None:
                    feats.n_threads = args.threads or 1
                used = [s for s in sources if s not in errors]
                n_frames = feats.n_frames if feats is not None else 0
                where = f"on Dask ({len(client.nthreads())} workers{', streamed' if args.stream else ''})"
            else:
                prep = prepare_features(sources, config, cache_dir=args.cache, jobs=args.jobs,
                                        stream_above=args.stream_above * 1e9, stream=args.stream,
                                        temp_parent=out.parent, progress=_progress(args))
                temp_cache = prep.temp_cache
                feats, errors, used, n_frames = prep.features, prep.errors, prep.sources, prep.n_frames
                where = "streamed from disk" if prep.streamed else "in memory"
            _report_skipped(args, errors)
            _check_strict(args, errors)
            if not used:
                raise JobError("no usable audio in the list: nothing to train on")
            if n_frames < args.components:
                raise JobError(f"only {n_frames} speech frames for {args.components} components")
            inputs = _guards.inputs_fingerprint(config.to_json(), used, feats)
            try:
                ubm = train_ubm(feats, args.components, init=args.init, n_iter=args.iters,
                                var_floor=args.var_floor, random_state=args.seed, n_threads=args.threads,
                                progress=_progress(args), checkpoint=checkpoint, resume=args.resume,
                                inputs_id=inputs)
            except CheckpointError as exc:
                raise JobError(str(exc)) from None
            except KeyboardInterrupt:
                with contextlib.suppress(Exception):
                    ck = read_checkpoint(checkpoint)
                    print(f"speaker train-ubm: checkpoint {checkpoint} holds {ck['done']} of {ck['total']} "
                          "EM passes; run the same command with --resume to continue", file=sys.stderr)
                raise
    finally:
        if temp_cache is not None:
            shutil.rmtree(temp_cache, ignore_errors=True)
    save_model(args.out, ubm, config=config)
    checkpoint.unlink(missing_ok=True)
    _say(args, f"UBM: {ubm.n_components} components x {ubm.means_.shape[1]} dims from {len(used)} files "
               f"({n_frames} frames {where}, {len(errors)} skipped); average log-likelihood "
               f"{ubm.lower_bound_:.3f} nats/frame -> {args.out}")
    return 0


def cmd_enroll(args) -> int:
    ubm, config = _load_ubm(args.ubm)
    scp = read_scp(args.scp) if args.scp else None
    spk_files = read_enroll_list(args.enroll, args.root, scp)
    _guards.refuse_inputs_as_outputs({"--out": args.out}, [("UBM", args.ubm), ("enrolment list", args.enroll),
                                     ("scp", args.scp)] + [("listed file", p) for f in spk_files.values()
                                                           for _, p in f])
    store = _store(args, config, dim=ubm.means_.shape[1])
    store.load([p for files in spk_files.values() for _, p in files], desc="features")
    _report_skipped(args, store.errors)
    _check_strict(args, store.errors)
    models, empty = {}, []
    for spk, files in spk_files.items():
        feats = [store.features[p] for _, p in files if p in store.features]
        if not feats:
            empty.append(spk)
            continue
        models[spk] = map_adapt(ubm, feats, relevance_factor=args.relevance_factor, adapt=args.adapt)
    if empty:
        print(f"not enrolled (no usable audio): {', '.join(empty)}", file=sys.stderr)
        _check_strict(args, dict.fromkeys(empty))
    if not models:
        raise JobError("no speaker could be enrolled")
    save_model(args.out, models, ubm=ubm, config=config)
    _say(args, f"enrolled {len(models)} speaker(s) (relevance factor {args.relevance_factor:g}, "
               f"adapt {args.adapt!r}) -> {args.out}")
    return 0


def cmd_score(args) -> int:
    ubm, config = _load_ubm(args.ubm)
    scp = read_scp(args.scp) if args.scp else None
    fmt, trials = read_trials(args.trials, args.root, scp)
    _guards.refuse_inputs_as_outputs({"--out": args.out}, [("UBM", args.ubm), ("models file", args.models),
                                     ("trial list", args.trials), ("scp", args.scp)]
                                     + [("listed file", p) for t in trials for p in (t.test_path, t.enrol_path)])
    store = _store(args, config, dim=ubm.means_.shape[1])
    skipped: dict[str, str] = {}
    if fmt == "voxceleb":
        enrol = {t.model: t.enrol_path for t in trials}
        store.load(list(enrol.values()) + [t.test_path for t in trials], desc="features")
        models = {}
        for name, path in enrol.items():
            if path in store.features:
                models[name] = map_adapt(ubm, store.features[path], relevance_factor=args.relevance_factor,
                                         adapt=args.adapt)
    else:
        if not args.models:
            raise JobError("Kaldi-style trials need --models (the output of 'speaker enroll')")
        models = load_speakers(args.models, ubm)
        store.load([t.test_path for t in trials], desc="features")
    _report_skipped(args, store.errors)
    usable, rows = [], []
    for i, t in enumerate(trials):
        if t.model not in models:
            why = (store.errors.get(t.enrol_path, "enrolment failed") if fmt == "voxceleb"
                   else "unknown model id")
            skipped[f"{t.model} {t.test}"] = f"model: {why}"
        elif t.test_path in store.errors:
            skipped[f"{t.model} {t.test}"] = f"test file: {store.errors[t.test_path]}"
        else:
            usable.append(i)
    if usable:
        scores = score_trials([(trials[i].model, trials[i].test_path) for i in usable], models, ubm,
                              store.get, top_c=args.top_c, progress=_progress(args))
        for i, sc in zip(usable, scores):
            if np.isfinite(sc):
                rows.append(format_line(trials[i].model, trials[i].test, f"{sc:.6f}"))
            else:
                skipped[f"{trials[i].model} {trials[i].test}"] = f"score is {sc} (the model or the features give " \
                                                                  "non-finite log-likelihoods)"
    if skipped:
        print(f"skipped {len(skipped)} trial(s) (not scored, not in {args.out}):", file=sys.stderr)
        for k, why in list(skipped.items())[:50]:
            print(f"  {k}: {why}", file=sys.stderr)
        if len(skipped) > 50:
            print(f"  ... and {len(skipped) - 50} more", file=sys.stderr)
    _check_strict(args, {**store.errors, **skipped})
    if not rows:
        raise JobError("no trial could be scored")
    write_text_atomic(args.out, "\n".join(rows) + "\n")
    _say(args, f"scored {len(rows)} of {len(trials)} trials ({fmt} format"
               f"{', top-C ' + str(args.top_c) if args.top_c else ''}) -> {args.out}")
    return 0


def _metrics_table(scores: np.ndarray, labels: np.ndarray) -> dict:
    from .metrics import DCF_PRESETS, evaluate
    out = {"n_trials": int(len(labels)), "n_target": int(labels.sum()),
           "n_nontarget": int((~labels).sum())}
    out.update(evaluate(scores, labels, presets=("vox_p01", "vox_p05", "sre08", "sre10")))
    out["dcf_params"] = {k: dict(DCF_PRESETS[k]._asdict()) for k in ("vox_p01", "vox_p05", "sre08", "sre10")}
    return out


def _format_table(m: dict) -> str:
    lines = [f"trials: {m['n_trials']} ({m['n_target']} target, {m['n_nontarget']} non-target)",
             f"{'EER (ROCCH)':34s} {100 * m['eer']:7.2f} %"]
    names = {"vox_p01": "minDCF p=0.01", "vox_p05": "minDCF p=0.05",
             "sre08": "minDCF SRE08 (p=0.01, Cmiss=10)", "sre10": "minDCF SRE10 (p=0.001)"}
    for k, label in names.items():
        lines.append(f"{label:34s} {m['min_dcf_' + k]:9.4f}")
    return "\n".join(lines)


def cmd_eval(args) -> int:
    _guards.refuse_inputs_as_outputs({"--det": args.det}, [("score file", args.scores), ("trial list", args.trials)])
    fmt, trials = read_trials(args.trials, args.root)
    scores = read_scores(args.scores)
    s, lab, missing, unlabelled = [], [], 0, 0
    for t in trials:
        if t.label is None:
            unlabelled += 1
            continue
        key = (t.model, t.test)
        if key not in scores:
            missing += 1
            continue
        s.append(scores[key])
        lab.append(t.label)
    if unlabelled:
        print(f"{unlabelled} trial(s) without a target/nontarget label ignored", file=sys.stderr)
    if missing:
        print(f"{missing} labelled trial(s) have no score (skipped when scoring?) and are left out",
              file=sys.stderr)
    s, lab = np.asarray(s, dtype=np.float64), np.asarray(lab, dtype=bool)
    if lab.size == 0 or lab.all() or not lab.any():
        raise JobError("evaluation needs scored target and non-target trials")
    m = _metrics_table(s, lab)
    if args.det:
        from .metrics import save_det_plot
        save_det_plot(args.det, scores=s, labels=lab, label=Path(args.scores).name)
    print(json.dumps(m, indent=2) if args.json else _format_table(m))
    return 0


def cmd_extract(args) -> int:
    config = _feature_config(args)
    entries = list(dict.fromkeys(read_audio_list(args.list, args.root)))
    names = _guards.output_names(entries, flat=bool(args.ark))
    outs = ({"--ark": args.ark, "--ark (its .scp index)": Path(args.ark).with_suffix(".scp")} if args.ark else
            {"--out": Path(args.out) / "feats.lst", **{f"--out ({n}.npy)": Path(args.out) / f"{n}.npy"
                                                      for n in names.values()}})
    _guards.refuse_inputs_as_outputs(outs, [("list", args.list), ("config", args.config)]
                                     + [("listed file", p) for _, p in entries])
    store = _store(args, config)
    store.load([p for _, p in entries], desc="features")
    _report_skipped(args, store.errors)
    _check_strict(args, store.errors)
    ok = [(k, p) for k, p in entries if p in store.features]
    if not ok:
        raise JobError("no usable audio in the list")
    if args.ark:
        import kaldiio
        ark = Path(args.ark)
        scp = ark.with_suffix(".scp")
        with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
            for key, p in ok:
                writer(names[(key, p)], store.features[p])
        _say(args, f"wrote {len(ok)} feature matrices to {ark} (index {scp})")
    else:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        lines = []
        for key, p in ok:
            target = out / f"{names[(key, p)]}.npy"
            from ._atomic import atomic_path
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, store.features[p])
            lines.append(format_line(key, str(target.resolve())))
        write_text_atomic(out / "feats.lst", "\n".join(lines) + "\n")
        _say(args, f"wrote {len(ok)} feature files to {out} (list: {out / 'feats.lst'})")
    return 0


def fixtures_dir() -> Path:
    """Folder of the bundled audio fixtures and their lists (installed with the package)."""
    from importlib.resources import files
    p = Path(str(files("speaker") / "_fixtures"))
    if (p / "trials.txt").exists():
        return p
    p = Path(__file__).resolve().parent.parent / "audio_fixtures"
    if (p / "trials.txt").exists():
        return p
    raise JobError("the audio fixtures are not installed with this copy of speaker")


def cmd_demo(args) -> int:
    fx = fixtures_dir()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="speaker-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "features.json"
    write_text_atomic(cfg, FeatureConfig(sample_rate=8000).to_json(indent=2))
    common = ["--jobs", str(args.jobs)] + (["--quiet"] if args.quiet else [])
    steps = [
        ["train-ubm", "--list", str(fx / "ubm.lst"), "--out", str(work / "ubm.npz"),
         "--components", str(args.components), "--config", str(cfg)],
        ["enroll", "--ubm", str(work / "ubm.npz"), "--enroll", str(fx / "enroll.txt"),
         "--out", str(work / "models.npz")],
        ["score", "--ubm", str(work / "ubm.npz"), "--models", str(work / "models.npz"),
         "--trials", str(fx / "trials.txt"), "--out", str(work / "scores.txt"), "--top-c", "5"],
        ["score", "--ubm", str(work / "ubm.npz"), "--trials", str(fx / "trials_vox.txt"),
         "--out", str(work / "scores_vox.txt"), "--top-c", "5"],
    ]
    for step in steps:
        _say(args, "$ speaker " + " ".join(step))
        rc = main(step + common)
        if rc in (130, 143):
            raise _interrupt.Terminated() if rc == 143 else KeyboardInterrupt
        if rc != 0:
            raise JobError(f"demo step failed: speaker {step[0]}")
    for title, trials, scores in (("Kaldi-style trials (20 enrolment files per speaker)", "trials.txt", "scores.txt"),
                                  ("VoxCeleb-style trials (one enrolment file per model, same digit)", "trials_vox.txt",
                                   "scores_vox.txt")):
        print(f"\n== {title}: {fx / trials}")
        main(["eval", "--scores", str(work / scores), "--trials", str(fx / trials)])
    print(f"\noutputs in {work}")
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="speaker",
        description="GMM-UBM speaker verification: train a UBM, enrol speakers, score trials, evaluate.",
        epilog="Run 'speaker demo' to see the whole recipe on the bundled recordings. "
               "'speaker COMMAND --help' explains each command.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = argparse.ArgumentParser(add_help=False)
    g = run.add_argument_group("running")
    g.add_argument("--jobs", type=_guards.int_option(1, _guards.max_threads), default=1, metavar="N", help="processes for feature extraction (default 1)")
    g.add_argument("--cache", metavar="DIR", help="cache extracted features here (reused across commands)")
    g.add_argument("--quiet", action="store_true", help="no progress bars or summaries")
    g.add_argument("--strict", action="store_true", help="fail (exit 1) if any input had to be skipped")

    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", metavar="DIR", help="resolve relative paths in lists against DIR (default: the list's folder)")

    feat = argparse.ArgumentParser(add_help=False)
    g = feat.add_argument_group("features")
    g.add_argument("--config", metavar="JSON", help="FeatureConfig as JSON (see speaker.FeatureConfig)")
    g.add_argument("--sample-rate", type=_guards.int_option(1000, 384_000), metavar="HZ",
                   help="analysis sample rate, 1000 to 384000 (default 16000; 8000 for telephone audio)")

    adapt = argparse.ArgumentParser(add_help=False)
    g = adapt.add_argument_group("MAP adaptation")
    g.add_argument("--relevance-factor", type=_guards.float_option(0.0, 1e6, lo_open=True), default=16.0, metavar="R",
                   help="relevance factor r > 0 (default 16)")
    g.add_argument("--adapt", choices=["m", "mw", "mv", "mwv", "w", "v", "wv"], default="m",
                   help="adapt means (m), weights (w), variances (v) (default m)")

    s = sub.add_parser("train-ubm", parents=[root, feat, run], help="train a universal background model",
                       description="Train a UBM by EM on the speech frames of every file in a list. "
                                   "LIST has one audio path per line, or 'utt_id path' (Kaldi wav.scp); "
                                   ".npy feature files and Kaldi 'file.ark:offset' entries work too.")
    s.add_argument("--list", required=True, metavar="LIST", help="audio list")
    s.add_argument("--out", required=True, metavar="NPZ", help="UBM file to write")
    s.add_argument("--components", type=_guards.int_option(1, 4096), required=True, metavar="K",
                   help="number of Gaussians, at most 4096 (e.g. 64 to 2048)")
    s.add_argument("--iters", type=_guards.int_option(0, 100_000), default=10, metavar="N", help="EM iterations at the final size (default 10)")
    s.add_argument("--init", choices=["split", "kmeans"], default="split", help="binary splitting (default) or k-means")
    s.add_argument("--var-floor", type=_guards.float_option(0.0, 1.0), default=0.01, metavar="F",
                   help="variance floor, fraction of the global variance, in [0, 1] (default 0.01; 0 disables)")
    s.add_argument("--seed", type=_guards.int_option(0, 2**32 - 1), default=0, help="random seed (default 0)")
    s.add_argument("--threads", type=_guards.int_option(1, _guards.max_threads), metavar="N",
                   help="threads of the EM core, at most max(1024, 4 x cores) (default all cores; with Dask, "
                        "per task: default 1)")

    def _at_least(lo, kind=int):
        def parse(v):
            try:
                x = kind(v)
            except ValueError:
                raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {v!r}") from None
            if not x >= lo:
                raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
            return x
        return parse

    g = s.add_argument_group("scale: streaming, Dask, checkpoints (docs/scaling.md)")
    g.add_argument("--stream", action="store_true",
                   help="keep no features in memory: read them from disk at every EM pass (.npy / ark entries "
                        "where they are, audio features from --cache or a temporary folder beside --out)")
    g.add_argument("--stream-above", type=_at_least(0.0, float), default=4.0, metavar="GB",
                   help="stream automatically once the features exceed GB gigabytes (default 4; this machine only)")
    dask = g.add_mutually_exclusive_group()
    dask.add_argument("--scheduler", metavar="ADDRESS",
                      help="run feature extraction and every EM pass on this Dask cluster (e.g. tcp://host:8786); "
                           "the workers read the listed files under the same paths (shared filesystem)")
    dask.add_argument("--dask-workers", type=_guards.int_option(1, _guards.max_threads), metavar="N",
                      help="start a local Dask cluster of N worker processes and run on it")
    g.add_argument("--checkpoint", metavar="NPZ",
                   help="checkpoint written after every EM pass (default: OUT with .ckpt.npz; removed on success)")
    g.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint (same list, features and options; refused otherwise)")
    s.set_defaults(func=cmd_train_ubm)

    s = sub.add_parser("enroll", parents=[root, adapt, run], help="enrol speakers by MAP adaptation",
                       description="Adapt the UBM to each speaker. ENROLL has lines 'speaker_id path [path ...]'. "
                                   "Features use the configuration stored in the UBM file.")
    s.add_argument("--ubm", required=True, metavar="NPZ")
    s.add_argument("--enroll", required=True, metavar="ENROLL")
    s.add_argument("--out", required=True, metavar="NPZ", help="speaker models file to write")
    s.add_argument("--scp", metavar="SCP", help="Kaldi wav.scp mapping utterance ids used in ENROLL to paths")
    s.set_defaults(func=cmd_enroll)

    s = sub.add_parser("score", parents=[root, adapt, run], help="score verification trials",
                       description="Score trials; writes 'model_id test_path score' lines in trial order "
                                   "(score: average log-likelihood ratio per frame, nats). TRIALS is Kaldi style "
                                   "'model_id test_path [target|nontarget]' (needs --models) or VoxCeleb style "
                                   "'1|0 enrol_path test_path' (each enrolment file is enrolled on the fly).")
    s.add_argument("--ubm", required=True, metavar="NPZ")
    s.add_argument("--models", metavar="NPZ", help="speaker models from 'speaker enroll' (Kaldi-style trials)")
    s.add_argument("--trials", required=True, metavar="TRIALS")
    s.add_argument("--out", required=True, metavar="TXT", help="score file to write")
    s.add_argument("--top-c", type=_guards.int_option(1, 4096), metavar="C", help="fast scoring with the UBM's C best components per frame (Reynolds: 5); default all")
    s.add_argument("--scp", metavar="SCP", help="Kaldi wav.scp mapping utterance ids used in TRIALS to paths")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("eval", parents=[root], help="EER and minDCF of scored trials",
                       description="Match scores to labelled trials and print EER (ROC convex hull, as BOSARIS) "
                                   "and minDCF at p_target 0.01 and 0.05 and the NIST SRE08/SRE10 operating points.")
    s.add_argument("--scores", required=True, metavar="TXT")
    s.add_argument("--trials", required=True, metavar="TRIALS")
    s.add_argument("--det", metavar="PNG", help="also draw the DET curve to this PNG (needs matplotlib)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_eval, quiet=False, strict=False)

    s = sub.add_parser("extract", parents=[root, feat, run], help="precompute features",
                       description="Extract features of every file in LIST into a folder of .npy files "
                                   "(with a list 'utt_id path' usable by the other commands) or a Kaldi ark/scp.")
    s.add_argument("--list", required=True, metavar="LIST")
    dest = s.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", metavar="DIR", help="folder for .npy files")
    dest.add_argument("--ark", metavar="ARK", help="Kaldi archive to write (the .scp index goes beside it)")
    s.set_defaults(func=cmd_extract)

    s = sub.add_parser("demo", parents=[run], help="run the whole recipe on the bundled recordings",
                       description="Train a UBM, enrol 6 speakers, score Kaldi- and VoxCeleb-style trials and print "
                                   "EER/minDCF, on the bundled Free Spoken Digit Dataset subset.")
    s.add_argument("--out", metavar="DIR", help="folder for the outputs (default: a new temporary folder)")
    s.add_argument("--components", type=_guards.int_option(1, 4096), default=64, metavar="K", help="UBM size (default 64)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("jobs", "components", "iters", "top_c", "threads"):
        v = getattr(args, name, None)
        if v is not None and v < (0 if name == "iters" else 1):
            parser.error(f"--{name.replace('_', '-')} must be >= {0 if name == 'iters' else 1}")
    _interrupt.install()
    try:
        return args.func(args)
    except (JobError, ListError, ModelError, _guards.GuardError, WriteError) as exc:
        print(f"speaker {args.command}: error: {exc}", file=sys.stderr)
    except (ValueError, OSError) as exc:
        print(f"speaker {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, _interrupt.Terminated) else "interrupted"
        print(f"speaker {args.command}: {what}; earlier outputs are intact", file=sys.stderr)
        return _interrupt.exit_code(exc)
    except Exception as exc:  # noqa: BLE001 - MemoryError, RecursionError, a bug: one line, never a traceback
        print(f"speaker {args.command}: error: {_guards.describe(exc)}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
