#!/usr/bin/env python
"""Share of gmmext's public API that carries type hints: parameters and return values.

The public API is every name of ``gmmext.__all__``: its functions, and the public methods (and
``__init__``) that gmmext's classes define themselves (methods inherited from scikit-learn are
not counted); ``self`` / ``cls`` are not parameters.  Prints one line, and with ``-v`` every
parameter without a hint::

    python tools/hint_coverage.py [-v]
"""
from __future__ import annotations

import inspect
import sys
from typing import Callable, Iterator


def public_callables() -> Iterator[tuple[str, Callable]]:
    """(qualified name, function) of every public callable of ``gmmext.__all__``."""
    import gmmext
    for name in gmmext.__all__:
        obj = getattr(gmmext, name)
        if inspect.isclass(obj):
            own = [b for b in obj.__mro__ if b.__module__.startswith("gmmext")]
            for mname, m in inspect.getmembers(obj):
                if (mname.startswith("_") and mname != "__init__") or not callable(m):
                    continue
                if any(mname in vars(b) for b in own):
                    yield f"{name}.{mname}", m
        elif inspect.isfunction(obj):
            yield name, obj
        elif not isinstance(obj, str):                # an instance (single_thread_blas): its protocol
            for mname in ("__enter__", "__exit__"):
                yield f"{name}.{mname}", getattr(type(obj), mname)


def coverage() -> dict:
    """Counts: ``params``, ``params_hinted``, ``returns``, ``returns_hinted`` and ``missing`` (names)."""
    out = dict(params=0, params_hinted=0, returns=0, returns_hinted=0, missing=[])
    for qual, f in public_callables():
        sig = inspect.signature(inspect.unwrap(f))
        for p in sig.parameters.values():
            if p.name in ("self", "cls"):
                continue
            out["params"] += 1
            if p.annotation is inspect.Parameter.empty:
                out["missing"].append(f"{qual}({p.name})")
            else:
                out["params_hinted"] += 1
        if not qual.endswith("__init__"):
            out["returns"] += 1
            if sig.return_annotation is inspect.Signature.empty:
                out["missing"].append(f"{qual} -> return")
            else:
                out["returns_hinted"] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    c = coverage()
    print(f"public gmmext API: {c['params_hinted']}/{c['params']} parameters hinted "
          f"({100 * c['params_hinted'] / c['params']:.0f} %), {c['returns_hinted']}/{c['returns']} returns "
          f"hinted ({100 * c['returns_hinted'] / max(c['returns'], 1):.0f} %)")
    if "-v" in (sys.argv[1:] if argv is None else argv):
        print("\n".join(c["missing"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
