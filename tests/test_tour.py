"""The README's tour runs as written, with the single import ``import backpain_epi as bp``, on objects in memory."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tour_code() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A tour of the Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_tour_uses_one_import():
    code = tour_code()
    assert [line for line in code.splitlines() if line.startswith(("import ", "from "))] == ["import backpain_epi as bp"]


@pytest.mark.slow
def test_the_readme_tour_runs(tmp_path, monkeypatch):
    code = tour_code().replace('"models/', f'"{ROOT}/models/')
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "README.md (tour)", "exec"), namespace)
    assert namespace["paper"].out is None and namespace["full"].out == Path("runs/full")
    assert set(namespace["comparison"]["model"]) == {"paper", "full"}
    assert namespace["rep"].index.is_file()
    html = namespace["rep"].index.read_text(encoding="utf-8")
    assert "paper" in html and "full" in html
