"""The shape of the speaker package: its start-up, its command-line help (its imports: tests/test_layers.py)."""
import argparse
import subprocess
import sys

import numpy as np
import pytest

from speaker.cli import COMMANDS, build_parser

def test_cli_import_pulls_in_no_heavy_module():
    code = ("import sys, speaker.cli; speaker.cli.build_parser(); "
            "print(' '.join(m for m in ('numpy', 'gmmext', 'sklearn', 'scipy', 'librosa', 'dask', "
            "'distributed', 'matplotlib', 'kaldiio', 'tqdm', 'sqlalchemy', 'psycopg') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    commands = _subparsers(parser)
    assert set(commands) == {c.NAME for c in COMMANDS}
    for name, sub in [("speaker", parser)] + sorted(commands.items()):
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip() and action.help != argparse.SUPPRESS, \
                f"{name} {'/'.join(action.option_strings) or action.dest} has no help text"


def test_components_defaults():
    parser = build_parser()
    args = parser.parse_args(["train-ubm", "--list", "l", "--out", "o"])
    assert args.components == 512
    assert parser.parse_args(["demo"]).components == 64


def test_eval_takes_several_score_files():
    args = build_parser().parse_args(["eval", "--scores", "a.txt", "b.txt", "--trials", "t"])
    assert args.scores == ["a.txt", "b.txt"]


def _write_scores(path, trials, scores):
    path.write_text("".join(f"{m} {t} {s:.6f}\n" for (m, t, _), s in zip(trials, scores)))


def test_eval_several_score_files_one_det_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from speaker.cli import main
    from speaker.metrics import eer
    rng = np.random.default_rng(0)
    trials = [(f"m{i % 5}", f"t{i}.wav", bool(rng.random() < 0.3)) for i in range(300)]
    (tmp_path / "trials.txt").write_text("".join(f"{m} {t} {'target' if lab else 'nontarget'}\n"
                                                 for m, t, lab in trials))
    labels = np.array([lab for _, _, lab in trials])
    systems = {"good.txt": rng.standard_normal(300) + 3 * labels, "poor.txt": rng.standard_normal(300) + labels}
    for name, s in systems.items():
        _write_scores(tmp_path / name, trials, s)
    det = tmp_path / "det.png"
    assert main(["eval", "--scores", str(tmp_path / "good.txt"), str(tmp_path / "poor.txt"),
                 "--trials", str(tmp_path / "trials.txt"), "--det", str(det)]) == 0
    out, err = capsys.readouterr()
    assert "== good.txt" in out and "== poor.txt" in out
    for name, s in systems.items():
        e = eer(np.round(s, 6), labels)
        table = out.split(f"== {name}\n")[1].split("\n\n")[0]
        assert f"{100 * e:7.2f} %" in table
    assert det.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"written to {det}" in err
    assert main(["eval", "--scores", str(tmp_path / "good.txt"), str(tmp_path / "poor.txt"),
                 "--trials", str(tmp_path / "trials.txt"), "--json"]) == 0
    import json
    tables = json.loads(capsys.readouterr().out)
    assert set(tables) == set(systems)


def test_det_legend_carries_each_eer():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    from speaker.det import plot_det
    from speaker.metrics import det_curve, eer
    rng = np.random.default_rng(3)
    labels = rng.random(500) < 0.4
    ax = Figure().add_subplot()
    for name, shift in (("A", 2.0), ("B", 0.5)):
        s = rng.standard_normal(500) + shift * labels
        plot_det(scores=s, labels=labels, ax=ax, label=name)
        assert ax.get_legend().get_texts()[-1].get_text() == f"{name} (EER {100 * eer(s, labels):.2f} %)"
    pm, pf, _ = det_curve(s, labels)
    plot_det(pm, pf, ax=ax, label="C")
    e = eer(s, labels, method="interpolated")
    assert ax.get_legend().get_texts()[-1].get_text() == f"C (EER {100 * e:.2f} %)"
    plot_det(pm, pf, ax=ax, label="D", eer_in_label=False)
    assert ax.get_legend().get_texts()[-1].get_text() == "D"
