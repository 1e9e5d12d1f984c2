"""The stage runner: a rerun does no work, a changed input reruns exactly what depends on it, an interrupted stage resumes."""

from __future__ import annotations

import json

import pytest

from backpain_epi.errors import BackpainEpiError
from backpain_epi.pipeline.stages import Stage, StageRunner, fingerprint


class Chain:
    """Three toy stages a -> b -> c writing files; ``calls`` counts the work each did."""

    def __init__(self, root, param=1):
        self.root, self.param, self.calls = root, param, {"a": 0, "b": 0, "c": 0}

    def stages(self):
        r = self.root

        def a():
            self.calls["a"] += 1
            (r / "a").mkdir(exist_ok=True)
            (r / "a" / "out.txt").write_text((r / "source.txt").read_text() * self.param)
            return "a done"

        def b():
            self.calls["b"] += 1
            (r / "b").mkdir(exist_ok=True)
            (r / "b" / "out.txt").write_text((r / "a" / "out.txt").read_text().upper())
            return "b done"

        def c():
            self.calls["c"] += 1
            (r / "c").mkdir(exist_ok=True)
            (r / "c" / "out.txt").write_text((r / "b" / "out.txt").read_text() + "!")
            return "c done"

        return [Stage("a", a, r / "a", inputs=[r / "source.txt"], params={"param": self.param}),
                Stage("b", b, r / "b", inputs=[r / "a" / "out.txt"]),
                Stage("c", c, r / "c", inputs=[r / "b" / "out.txt"])]

    def run(self, **kw):
        runner = StageRunner(self.root, echo=lambda _: None, **kw)
        return [runner.run(s).status for s in self.stages()]


@pytest.fixture
def chain(tmp_path):
    (tmp_path / "source.txt").write_text("x")
    return Chain(tmp_path)


def test_first_run_runs_all_and_rerun_does_no_work(chain):
    assert chain.run() == ["ran", "ran", "ran"]
    assert chain.run() == ["cached", "cached", "cached"]
    assert chain.calls == {"a": 1, "b": 1, "c": 1}
    assert (chain.root / "c" / "out.txt").read_text() == "X!"


def test_changed_file_reruns_downstream_only(chain):
    chain.run()
    (chain.root / "source.txt").write_text("y")
    assert chain.run() == ["ran", "ran", "ran"]
    assert (chain.root / "c" / "out.txt").read_text() == "Y!"


def test_changed_parameter_reruns_that_stage_and_only_what_its_output_changes(chain):
    chain.run()
    chain.param = 2
    assert chain.run() == ["ran", "ran", "ran"]
    # a stage whose rerun writes the same output leaves the downstream stages alone
    (chain.root / "b" / "out.txt").write_text("XX")  # same content as b writes
    chain.calls = {"a": 0, "b": 0, "c": 0}
    assert chain.run(force={"b"}) == ["cached", "ran", "cached"]
    assert chain.calls == {"a": 0, "b": 1, "c": 0}


def test_new_key_empties_the_output_folder_first(chain):
    chain.run()
    stale = chain.root / "a" / "stale.txt"
    stale.write_text("from an older run")
    (chain.root / "source.txt").write_text("z")
    chain.run()
    assert not stale.exists()


def test_interrupted_stage_resumes_in_place(chain, tmp_path):
    chain.run()
    state_path = tmp_path / ".pipeline" / "state.json"
    state = json.loads(state_path.read_text())
    state["stages"]["b"]["finished"] = None  # as if b was stopped half-way
    state_path.write_text(json.dumps(state))
    partial = tmp_path / "b" / "partial.txt"
    partial.write_text("work done before the interruption")
    assert chain.run() == ["cached", "resumed", "cached"]
    assert partial.exists()  # kept: a resumable stage goes on from it


def test_deleted_output_reruns_the_stage(chain):
    chain.run()
    import shutil

    shutil.rmtree(chain.root / "c")
    assert chain.run() == ["cached", "cached", "ran"]


def test_unreadable_state_file_is_a_clear_error(chain, tmp_path):
    chain.run()
    (tmp_path / ".pipeline" / "state.json").write_text("{not json")
    with pytest.raises(BackpainEpiError, match="state.json: not readable JSON; delete it"):
        chain.run()


def test_fingerprint_of_files_and_folders(tmp_path):
    f = tmp_path / "f.txt"
    assert fingerprint(f) == "missing"
    f.write_text("1")
    one = fingerprint(f)
    f.write_text("2")
    assert fingerprint(f) != one
    d = tmp_path / "d"
    d.mkdir()
    (d / "img.nii.gz").write_bytes(b"abc")
    before = fingerprint(d)
    (d / "img2.nii.gz").write_bytes(b"abc")
    assert fingerprint(d) != before


def test_independent_stages_run_together_and_skip_what_is_up_to_date(tmp_path):
    (tmp_path / "source.txt").write_text("x")
    calls = []

    def make(name):
        def run():
            calls.append(name)
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / "out.txt").write_text(name)
            return f"{name} done"
        return Stage(name, run, tmp_path / name, inputs=[tmp_path / "source.txt"])

    given = []

    def execute(todo):
        given.append([s.name for s in todo])
        return [s.run() for s in todo]

    StageRunner(tmp_path, echo=lambda _: None).run(make("p"))
    out = StageRunner(tmp_path, echo=lambda _: None).run_together([make("p"), make("q"), make("r")], ["1/3", "2/3", "3/3"], execute)
    assert [o.status for o in out] == ["cached", "ran", "ran"] and given == [["q", "r"]] and out[2].summary == "r done"
    again = StageRunner(tmp_path, echo=lambda _: None).run_together([make("p"), make("q"), make("r")], ["", "", ""], execute)
    assert [o.status for o in again] == ["cached"] * 3 and len(given) == 1 and calls == ["p", "q", "r"]
