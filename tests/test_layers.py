"""The import graph, in one place: speaker -> gmmext -> core, one way, with no circle.

Every ``import`` / ``from ... import`` statement of ``gmmext/`` and ``speaker/`` counts, at module
level and inside functions alike (a deferred import is still an arrow).  Checked: no circle in
gmmext, nor in speaker and gmmext together; no arrow from gmmext to speaker; speaker imports
only names that ``gmmext/__init__.py`` exports (no private gmmext module); no module imports the
package that contains it other than by a relative import of a sibling (the parent package is
imported first: that would be a circle the graph does not show)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gmmext", "speaker")


def _modules() -> dict[str, Path]:
    """Module name -> source file; compiled extensions (``gmmext._core``) map to their binary."""
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*")):
            if path.suffix not in (".py", ".so", ".pyd"):
                continue
            parts = list(path.relative_to(ROOT).parts)
            parts[-1] = parts[-1].split(".")[0]
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ``PACKAGES`` that module ``name`` (at ``path``) imports, anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            # "from pkg import sub" imports the submodule pkg.sub when there is one
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] not in PACKAGES:
                continue
            while t not in known and "." in t:      # "import gmmext.x.y" where y is a name
                t = t.rpartition(".")[0]
            if t in known and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) if path.suffix == ".py" else set()
            for name, path in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a list of modules), or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_scanner_sees_circles_and_deferred_imports(tmp_path):
    """The scan itself: a circle made by a deferred import inside a function is found."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from ._x import y\n    import gmmext._z\n")
    assert _imports("gmmext.m", p, {"gmmext.m", "gmmext._x", "gmmext._z"}) == {"gmmext._x", "gmmext._z"}


def test_gmmext_imports_have_no_circle():
    graph = {n: {m for m in deps if m.startswith("gmmext")} for n, deps in _graph().items()
             if n.startswith("gmmext")}
    assert "gmmext._mixture" in graph and graph["gmmext._mixture"]     # the scan found something
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    for n, deps in _graph().items():
        if n.startswith("gmmext"):
            assert not any(m.startswith("speaker") for m in deps), (n, deps)


def test_speaker_and_gmmext_together_have_no_circle():
    graph = _graph()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_speaker_uses_only_the_public_gmmext_api():
    private = {n: sorted(m for m in deps if m.startswith("gmmext.")) for n, deps in _graph().items()
               if n.startswith("speaker")}
    assert not {n: d for n, d in private.items() if d}
    import gmmext
    for name, path in _modules().items():
        if not name.startswith("speaker") or path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gmmext"):
                assert node.module == "gmmext", f"{name} imports {node.module}"
                assert all(a.name in gmmext.__all__ for a in node.names), (name, [a.name for a in node.names])


def _own_package_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Modules that import a package containing them (the top-level packages excepted)."""
    out = {}
    for name, deps in graph.items():
        parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)} - set(PACKAGES)
        if deps & parents:
            out[name] = sorted(deps & parents)
    return out


def test_no_module_imports_its_own_package():
    assert _own_package_imports({"speaker.cli.x": {"speaker.cli", "speaker"}}) == {"speaker.cli.x": ["speaker.cli"]}
    assert _own_package_imports(_graph()) == {}

