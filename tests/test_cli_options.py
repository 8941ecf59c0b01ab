"""The command line's options and messages as a new user meets them: one meaning of --top-c,
no option abbreviated, each help paragraph once, DET legends (--label), the
progress lines' time left.  Parser-level and synthetic-score tests: no audio, no model."""
import argparse
import io
import re

import numpy as np
import pytest

from speaker import _progress
from speaker.cli import build_parser, main


def _commands():
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError("no subcommands")


def _options(sub):
    return {o: a for a in sub._actions for o in a.option_strings}


def test_top_c_has_one_meaning_everywhere():
    """Every command that scores has --top-c with the same type and help."""
    commands = _commands()
    scoring = {name for name, sub in commands.items() if "--top-c" in _options(sub)}
    assert scoring == {"score", "verify", "identify", "serve"}
    helps = {_options(commands[n])["--top-c"].help for n in scoring}
    types = {_options(commands[n])["--top-c"].type for n in scoring}
    assert len(helps) == 1 and len(types) == 1
    assert "Without --top-c scores are exact" in helps.pop()
    parse = types.pop()
    assert parse("1") == 1 and parse("4096") == 4096
    for bad in ("0", "-1", "4097", "5.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    for name in scoring:
        assert commands[name].parse_args(["--top-c", "5"] + _required(name)).top_c == 5
        assert commands[name].parse_args(_required(name)).top_c is None            # exact


def _required(name):
    return {"score": ["--trials", "t", "--out", "o"], "verify": ["--store", "s", "--speaker", "a", "f.wav"],
            "identify": ["--store", "s", "f.wav"], "serve": ["--store", "s"]}[name]


def test_options_are_never_abbreviated(capsys):
    """No command accepts a prefix of an option: '--top 3' given to verify is a usage error, not
    '--top-c 3' (identify's --top, the number of candidates, is a different option)."""
    for sub in _commands().values():
        assert sub.allow_abbrev is False
    with pytest.raises(SystemExit) as e:
        main(["verify", "--store", "s.db", "--speaker", "a", "f.wav", "--top", "3"])
    assert e.value.code == 2
    assert "unrecognized arguments: --top" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["identify", "--store", "s.db", "f.wav", "--top-", "3"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["identify", "--store", "s.db", "f.wav", "--top", "0"])
    assert e.value.code == 2


@pytest.mark.parametrize("command", ["verify", "identify", "serve"])
def test_the_decision_paragraph_is_printed_once(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.count("the Bayes threshold log(c_fa (1 - p_target) / (c_miss p_target))") == 1


# ---------------------------------------------------------------------------- eval --label, the DET legend
@pytest.fixture
def systems(tmp_path):
    """Five score files on one labelled trial list: (trials path, [score paths])."""
    rng = np.random.default_rng(1)
    n = 400
    labels = rng.random(n) < 0.2
    (tmp_path / "trials.txt").write_text("".join(f"m{i % 7} t{i}.wav {'target' if y else 'nontarget'}\n"
                                                 for i, y in enumerate(labels)))
    paths = []
    for k in range(5):
        s = rng.standard_normal(n) + (1.0 + 0.5 * k) * labels
        p = tmp_path / f"sys{k}" / "scores.txt"          # same file name in five folders
        p.parent.mkdir()
        p.write_text("".join(f"m{i % 7} t{i}.wav {v:.6f}\n" for i, v in enumerate(s)))
        paths.append(p)
    return tmp_path / "trials.txt", paths


@pytest.fixture
def figures(monkeypatch):
    """The DET figures speaker eval draws (speaker.det.det_figure's results)."""
    pytest.importorskip("matplotlib")
    from speaker import det
    drawn, real = [], det.det_figure

    def spy(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]
    monkeypatch.setattr(det, "det_figure", spy)
    return drawn


def test_labels_name_the_systems_in_the_det_legend_below_the_curves(systems, figures, tmp_path, capsys):
    from speaker.metrics import eer
    trials, paths = systems
    names = ["GMM-UBM", "GMM-UBM top-C", "i-vector PLDA", "i-vector cosine", "fusion"]
    args = ["eval", "--trials", trials, "--det", tmp_path / "det.png", "--scores", *paths]
    assert main([str(a) for a in args] + [x for n in names for x in ("--label", n)]) == 0
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert all(f"== {n}\n" in out for n in names)
    (fig,) = figures
    ax = fig.axes[0]
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    want = []
    lab = np.array([line.split()[2] == "target" for line in trials.read_text().splitlines()])
    for name, p in zip(names, paths):
        s = np.array([float(line.split()[2]) for line in p.read_text().splitlines()])
        want.append(f"{name} (EER {100 * eer(s, lab):.2f} %)")
    assert texts == want
    fig.canvas.draw()                                       # the legend lies below the axes ...
    leg, box = legend.get_window_extent(), ax.get_window_extent()
    assert leg.y1 <= box.y0
    from matplotlib.image import imread                     # ... and the image shows both
    height, width = imread(tmp_path / "det.png").shape[:2]
    assert height >= box.y1 - leg.y0 and width >= max(box.x1, leg.x1) - min(box.x0, leg.x0)


def test_without_labels_the_legend_shows_the_paths_and_a_wrong_count_is_refused(systems, figures, tmp_path,
                                                                                 capsys):
    trials, paths = systems
    assert main(["eval", "--trials", str(trials), "--det", str(tmp_path / "d.png"), "--scores",
                 str(paths[0]), str(paths[1])]) == 0
    texts = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert [t.split(" (EER")[0] for t in texts] == [str(paths[0]), str(paths[1])]     # same file names: paths
    capsys.readouterr()
    assert main(["eval", "--trials", str(trials), "--scores", str(paths[0]), str(paths[1]), "--label", "A"]) == 1
    assert "1 --label for 2 --scores file(s)" in capsys.readouterr().err


# ---------------------------------------------------------------------------- progress lines
class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_no_time_left_from_the_first_unit_alone(monkeypatch):
    """The first unit pays one-off costs (20 s here); the others take 0.5 s each.  The first line
    promises nothing; the time left is then the rate of the later units times the units left."""
    clock = _Clock()
    monkeypatch.setattr(_progress.time, "monotonic", clock)
    out = io.StringIO()
    bar = _progress.Progress(101, "features", "file", stream=out)
    clock.t += 20.0
    bar.update(1)                                    # printed: 20 s since the start
    for _ in range(20):
        clock.t += 0.5
        bar.update(1)                                # a line at 25 s (11 done): 90 left at 0.5 s each
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "features: 1/101 file (1 %), 20 s"
    assert lines[1] == "features: 11/101 file (11 %), 25 s, about 45 s left"
    assert lines[-1].endswith("done") and "left" not in lines[-1]


def test_a_step_that_ends_quickly_prints_no_estimate(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(_progress.time, "monotonic", clock)
    out = io.StringIO()
    with _progress.Progress(60, "features", "file", stream=out) as bar:
        clock.t += 15.0
        bar.update(1)
        for _ in range(59):
            clock.t += 0.01
            bar.update(1)
    assert not re.search(r"left", out.getvalue())
    assert out.getvalue().splitlines()[-1].startswith("features: 60/60 file (100 %), 16 s, done")
