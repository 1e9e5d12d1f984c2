"""A small stage runner: each stage reruns only when its inputs have changed.

A :class:`Stage` names its input files, its parameters and its output folder. Its
*key* is a SHA-256 over the package version, the parameters (as JSON) and a fingerprint of every input:
the content of a file, or, for a folder of images, each file's relative path, size
and modification time (as ``make`` does; hashing gigabytes of NIfTI on every run
would cost more than some stages). Keys are recorded in ``<out>/.pipeline/state.json``:

- same key, finished: the stage is skipped (``cached``);
- same key, unfinished (an interrupted run): the stage runs again *in place*, so a
  resumable stage (segmentation) goes on where it stopped;
- new key: the stage's output folder is emptied first, then the stage runs.

Because each stage's inputs are the files its upstream stages wrote, a change
anywhere reruns exactly the stages downstream of it whose inputs actually changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..errors import BackpainEpiError
from ..records import VERSION
from ..tableio import write_text

STATE_FILE = Path(".pipeline") / "state.json"


@dataclass
class Stage:
    """One step of the pipeline.

    Attributes
    ----------
    name
        Shown in the stage view and used as the key in the state file.
    run
        Called with no argument; does the work and returns a one-line summary.
    output
        Folder (or file) the stage owns: emptied when the stage's key changes.
    inputs
        Files or folders whose content the stage reads (fingerprinted for the key).
    params
        JSON-serialisable settings that change the stage's result.
    task
        A picklable description of the work, for stages that :meth:`StageRunner.run_together` hands to an executor
        (the model fits); ``run`` does the same work in this process.
    """

    name: str
    run: Callable[[], str]
    output: Path
    inputs: list[Path] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    task: Any = None

    def key(self) -> str:
        """SHA-256 over the package version, the parameters and every input's fingerprint."""
        h = hashlib.sha256(json.dumps({"backpain_epi": VERSION, **self.params}, sort_keys=True, default=str).encode())
        for path in self.inputs:
            h.update(str(path.name).encode())
            h.update(fingerprint(path).encode())
        return h.hexdigest()


@dataclass
class StageOutcome:
    """What happened to one stage: ``ran``, ``resumed`` or ``cached``, with the time and the summary."""

    name: str
    status: str
    seconds: float
    summary: str


def fingerprint(path: Path) -> str:
    """SHA-256 of a file's content; of a folder, over each file's relative path, size and mtime; ``missing`` if absent."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    elif path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                st = p.stat()
                h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        return "missing"
    return h.hexdigest()


class StageRunner:
    """Runs stages in order against the state file of a pipeline folder.

    Parameters
    ----------
    out
        The pipeline's output folder (holds ``.pipeline/state.json``).
    echo
        Called with each line of the stage view (``click.echo`` on the command line).
    force
        Names of stages to run even when their key is unchanged.
    """

    def __init__(self, out: Path, echo: Callable[[str], None] = print, force: set[str] | None = None):
        self.out = Path(out)
        self.echo = echo
        self.force = set(force or ())
        self.state_path = self.out / STATE_FILE
        self.state = self._read_state()
        self.outcomes: list[StageOutcome] = []

    def run(self, stage: Stage, position: str = "") -> StageOutcome:
        """Run ``stage`` unless its key is recorded as finished; record the result."""
        return self.run_together([stage], [position], lambda todo: [s.run() for s in todo])[0]

    def run_together(self, stages: list[Stage], positions: list[str], execute: Callable[[list[Stage]], list[str]]) -> list[StageOutcome]:
        """Run independent ``stages`` at once: ``execute`` gets those that are not up to date and returns their summaries
        in order (the pipeline's fits go to :func:`~backpain_epi.modelling.parallel.map_tasks`); each is recorded as
        :meth:`run` records it, with the time of the whole call."""
        outcomes: dict[str, StageOutcome] = {}
        todo: list[tuple[Stage, str, str, bool]] = []
        for stage, position in zip(stages, positions):
            key = stage.key()
            record = self.state.get(stage.name, {})
            label = f"[{position}] {stage.name}" if position else stage.name
            if record.get("key") == key and record.get("finished") and stage.name not in self.force and stage.output.exists():
                outcomes[stage.name] = StageOutcome(stage.name, "cached", 0.0, record.get("summary", ""))
                self.echo(f"{label}: up to date (inputs unchanged), skipped. {outcomes[stage.name].summary}")
                continue
            resumed = record.get("key") == key and not record.get("finished") and stage.name not in self.force
            if not resumed:
                _clear(stage.output)
            why = ("resuming an interrupted run" if resumed else "forced" if stage.name in self.force
                   else "inputs changed" if record else "first run")
            self.echo(f"{label}: running ({why}) ...")
            self._record(stage.name, {"key": key, "finished": None, "started": _now()})
            todo.append((stage, key, label, resumed))
        if todo:
            t0 = time.perf_counter()
            summaries = execute([t[0] for t in todo])
            seconds = time.perf_counter() - t0
            together = f" (together with {len(todo) - 1} other stage(s))" if len(todo) > 1 else ""
            for (stage, key, label, resumed), summary in zip(todo, summaries):
                summary = summary or ""
                self._record(stage.name, {"key": key, "finished": _now(), "seconds": round(seconds, 1), "summary": summary})
                outcomes[stage.name] = StageOutcome(stage.name, "resumed" if resumed else "ran", seconds, summary)
                self.echo(f"{label}: done in {seconds:,.1f} s{together}. {summary}")
        result = [outcomes[s.name] for s in stages]
        self.outcomes += result
        return result

    def _read_state(self) -> dict:
        if not self.state_path.is_file():
            return {}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except ValueError:
            raise BackpainEpiError(f"{self.state_path}: not readable JSON; delete it to rerun every stage.") from None
        return state.get("stages", {})

    def _record(self, name: str, record: dict) -> None:
        self.state[name] = record
        write_text(json.dumps({"stages": self.state}, indent=2) + "\n", self.state_path)


def _clear(output: Path) -> None:
    if output.is_dir():
        shutil.rmtree(output)
    elif output.exists():
        output.unlink()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
