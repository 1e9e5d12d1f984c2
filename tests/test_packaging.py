"""The install mechanism: torch pinned to the local CPU build, ranges that resolve on 3.11."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_constraints_pin_the_cpu_torch():
    lines = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    assert "torch==2.13.0" in lines


def test_every_make_install_uses_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^CONSTRAINTS \?= constraints\.txt$", makefile, re.M)
    installs = [line for line in makefile.splitlines() if "$(PIP) install" in line and "upgrade pip" not in line]
    assert installs and all("$(PIN)" in line for line in installs)
    assert "PIN   := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))" in makefile


def test_dependency_ranges():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0]: d for d in deps}
    assert "<6" in spec["pymc"] and "<0.24" in spec["arviz"] and "<3" in spec["pandas"]
    for name in ("patsy", "lifelines", "seaborn", "pyyaml", "pandera", "click"):
        assert name in spec


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make demo" in readme
