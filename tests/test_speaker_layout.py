"""The shape of the speaker package: its import graph, its start-up, its command-line help."""
import argparse
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speaker.cli import COMMANDS, build_parser

PKG = Path(__file__).resolve().parent.parent / "speaker"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module imported anywhere in the file (module level and inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)   # "from . import det" imports a module
    return out


def _graph():
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}, files


def test_no_import_circles_in_speaker():
    graph, _ = _graph()
    state = {}

    def visit(m, path):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                pytest.fail("import circle: " + " -> ".join(path + [m, n]))
            if n not in state:
                visit(n, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    # parent packages are imported before their modules: a module importing its own package
    # (other than through a relative sibling import) would be a circle the graph above misses
    for m, deps in graph.items():
        assert not any(m.startswith(d + ".") for d in deps if d != "speaker"), (m, deps)


def test_speaker_uses_only_the_public_gmmext_api():
    import gmmext
    _, files = _graph()
    for m, p in files.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gmmext"):
                assert node.module == "gmmext", f"{m} imports {node.module}"
                assert all(a.name in gmmext.__all__ for a in node.names), m
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("gmmext.") for a in node.names), m


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
