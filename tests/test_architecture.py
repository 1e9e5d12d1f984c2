"""The package's shape: imports go one way (core <- segmentation, modelling <- reporting <- pipeline <- cli),
nothing imports in a circle, and an import inside a function says why it is there.

The checks parse the source (AST); nothing is imported. ``test_the_checker_sees_*`` feed the
checker a modelling module that imports reporting, to show the layer test would fail on it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "backpain_epi"
#: Layer of each top-level part of the package; a module may import its own layer or lower ones only,
#: and the two middle stages (segmentation, modelling) not each other.
LAYERS = {"segmentation": 1, "modelling": 1, "reporting": 2, "pipeline": 3, "cli": 4, "__main__": 5}
CORE = 0
ROOT = 5  # the package's own __init__: the lazy public namespace
LAZY_MARK = "# lazy:"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT
    return LAYERS.get(parts[1], CORE)


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def imports(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every import of the package in ``source``."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    found = []

    def visit(node, inside):
        for child in ast.iter_child_nodes(node):
            in_fn = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets = []
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    subs = [f"{target}.{a.name}" for a in child.names if f"{target}.{a.name}" in known]
                    targets = subs or [target]
            elif isinstance(child, ast.Import):
                targets = [a.name for a in child.names if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")]
            found.extend((t, child.lineno, in_fn) for t in targets)
            visit(child, in_fn)

    visit(tree, False)
    return found


def function_imports_without_reason(source: str) -> list[int]:
    """Lines of imports inside functions that have no ``# lazy: <why>`` comment on their line or right above their block."""
    lines = source.splitlines()
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for child in ast.walk(node):
            if not isinstance(child, (ast.Import, ast.ImportFrom)):
                continue
            i = child.lineno - 1
            if LAZY_MARK in lines[i]:
                continue
            j = i - 1
            while j >= 0 and (lines[j].strip().startswith(("from ", "import ")) or not lines[j].strip()):
                j -= 1
            if j < 0 or LAZY_MARK not in lines[j]:
                bad.append(child.lineno)
    return sorted(set(bad))


def package_graph(root: Path = SRC / PACKAGE, sources: dict[str, str] | None = None):
    files = {module_name(p): p for p in root.rglob("*.py")}
    texts = sources or {m: p.read_text(encoding="utf-8") for m, p in files.items()}
    known = set(texts)
    packages = {m for m, p in files.items() if p.name == "__init__.py"} if sources is None else set()
    return {m: imports(src, m, m in packages, known) for m, src in texts.items()}, texts


def upward_imports(graph) -> list[str]:
    bad = []
    for module, found in graph.items():
        for target, line, _ in found:
            if target == PACKAGE and module != PACKAGE:
                bad.append(f"{module}:{line} imports the package root {PACKAGE} (import what you need from its module)")
            elif layer(target) > layer(module):
                bad.append(f"{module}:{line} imports {target}, a higher layer")
            elif layer(target) == layer(module) and part(target) != part(module):
                bad.append(f"{module}:{line} imports {target}: {part(module)} and {part(target)} must not know each other")
    return bad


def cycles(graph) -> list[list[str]]:
    edges = {m: sorted({t for t, _, _ in found if t in graph and t != m}) for m, found in graph.items()}
    out, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in edges.get(m, ()):
            if state.get(t) == "open":
                out.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return out


def test_imports_go_downward_only():
    graph, _ = package_graph()
    assert upward_imports(graph) == []


def test_no_import_cycles():
    graph, _ = package_graph()
    assert cycles(graph) == []


def test_every_import_inside_a_function_says_why():
    _, texts = package_graph()
    missing = {m: lines for m, src in texts.items() if (lines := function_imports_without_reason(src))}
    assert missing == {}, "imports inside functions need a '# lazy: <why>' comment (or move them to the top)"


def test_the_checker_sees_a_modelling_to_reporting_import_and_a_circle():
    sources = {
        f"{PACKAGE}.modelling.fit": "from ..reporting.style import save_figure\n",
        f"{PACKAGE}.reporting.style": "import numpy\n",
        f"{PACKAGE}.modelling.a": "from . import b\n",
        f"{PACKAGE}.modelling.b": "def f():\n    from .a import g\n",
        f"{PACKAGE}.dictionary": "from .validation import RULES\n",
        f"{PACKAGE}.validation": "from .dictionary import load_dictionary\n",
        f"{PACKAGE}.segmentation.batch": "from ..modelling.fit import fit_model\n",
    }
    graph, _ = package_graph(sources=sources)
    bad = upward_imports(graph)
    assert any("modelling.fit:1 imports backpain_epi.reporting.style, a higher layer" in b for b in bad)
    assert any("segmentation and modelling must not know each other" in b for b in bad)
    found = cycles(graph)
    assert [f"{PACKAGE}.modelling.a", f"{PACKAGE}.modelling.b", f"{PACKAGE}.modelling.a"] in found
    assert any(f"{PACKAGE}.dictionary" in c and f"{PACKAGE}.validation" in c for c in found)


def test_the_checker_wants_a_reason_for_a_function_level_import():
    src = ("def f():\n    import torch\n    return torch\n\n"
           "def g():\n    # lazy: torch takes seconds to import\n    import torch\n    from .x import y\n    return torch\n")
    assert function_imports_without_reason(src) == [2]


def _modules_after(code: str, banned: tuple[str, ...]) -> list[str]:
    """The modules of ``banned`` that a fresh interpreter has imported after running ``code``."""
    script = f"import sys\n{code}\nprint(','.join(m for m in {banned!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    return [m for m in out.split(",") if m]


def test_reading_runs_imports_no_pymc_or_torch():
    """``load_run`` and ``compare_runs`` (and the foundation before them) come without the samplers or torch."""
    code = ("import backpain_epi as bp\nbp.describe_cohort, bp.validate_table\n"
            "import sys\nfoundation = [m for m in ('arviz', 'matplotlib') if m in sys.modules]\n"
            "bp.load_run, bp.compare_runs\nassert not foundation, foundation")
    assert _modules_after(code, ("pymc", "pytensor", "torch", "nutpie")) == []


def test_help_imports_neither_pandas_nor_the_stages():
    code = ("from click.testing import CliRunner\nfrom backpain_epi.cli import main\n"
            "r = CliRunner().invoke(main, ['--help'])\nassert r.exit_code == 0, r.output")
    assert _modules_after(code, ("pandas", "scipy", "arviz", "pymc", "torch", "matplotlib")) == []


def test_the_tour_is_one_namespace():
    import backpain_epi as bp

    for name in ("simulate_cohort", "load_cohort", "fit_model", "load_run", "compare_runs", "build_report",
                 "segment_manifest", "run_pipeline", "describe_cohort", "FitResult", "Provenance", "GateFailedWarning"):
        assert name in bp.__all__ and name in dir(bp)
    with pytest.raises(AttributeError):
        bp.no_such_name
