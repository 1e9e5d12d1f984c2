"""The segmentation verbs of the command line: clear one-line errors, exit status 2."""

import importlib.util

import pandas as pd
import pytest
from click.testing import CliRunner

from backpain_epi.cli import main


@pytest.fixture()
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_the_verbs_are_listed(run):
    out = run("--help").output
    for verb in ("phantoms", "train-segmenter", "segment", "evaluate-segmenter"):
        assert verb in out


def test_a_wrong_device_says_did_you_mean(run, phantom_dir, tmp_path, tiny_weights):
    res = run("segment", "--manifest", phantom_dir / "manifest.csv", "--out", tmp_path / "o", "--device", "cdua", "--weights", tiny_weights)
    assert res.exit_code == 2 and "did you mean 'cuda'" in res.output


def test_missing_weights_name_the_option(run, phantom_dir, tmp_path):
    res = run("segment", "--manifest", phantom_dir / "manifest.csv", "--out", tmp_path / "o", "--weights", tmp_path / "none.pt")
    assert res.exit_code == 2 and "--weights" in res.output


def test_a_bad_manifest_names_the_column(run, phantom_dir, tmp_path, tiny_weights):
    pd.read_csv(phantom_dir / "manifest.csv").drop(columns="water").to_csv(tmp_path / "m.csv", index=False)
    res = run("segment", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "o", "--weights", tiny_weights)
    assert res.exit_code == 2 and "water" in res.output


def test_a_missing_manifest_is_one_line(run, tmp_path, tiny_weights):
    res = run("segment", "--manifest", tmp_path / "none.csv", "--out", tmp_path / "o", "--weights", tiny_weights)
    assert res.exit_code == 2 and "no such file" in res.output


@pytest.mark.parametrize("option", ["--steps", "--n-phantoms"])
def test_train_refuses_non_positive_sizes(run, tmp_path, option):
    res = run("train-segmenter", "--out", tmp_path / "w.pt", option, 0)
    assert res.exit_code == 2 and option in res.output


def test_segment_with_the_cli(run, phantom_dir, tmp_path, tiny_weights):
    res = run("segment", "--manifest", phantom_dir / "manifest.csv", "--out", tmp_path / "o", "--device", "cpu",
              "--weights", tiny_weights)
    assert res.exit_code == 0, res.output
    assert "Segmented 3 scan(s)" in res.output and (tmp_path / "o" / "exposures.csv").exists()


NNUNET = importlib.util.find_spec("nnunetv2") is not None


@pytest.mark.parametrize("args, message", [
    (["segment", "--batch-size", 0], "error: --batch-size 0: must be at least 1."),
    (["segment", "--workers", 0], "error: --workers 0: must be at least 1."),
    (["segment", "--engine", "labels", "--label-scheme", "none.yaml"], "error: --label-scheme none.yaml: file not found."),
    (["segment", "--engine", "labels", "--weights", "w.pt"],
     "error: --weights: not an option of --engine labels; it is for --engine builtin."),
    pytest.param(["segment", "--engine", "nnunet"], "error: --engine nnunet needs --model FOLDER: a trained nnU-Net v2 model folder",
                 marks=pytest.mark.skipif(not NNUNET, reason="nnunetv2 not installed")),
    (["evaluate-segmenter", "--n", 0], "error: --n 0: draw at least one phantom per family."),
    (["evaluate-segmenter", "--manifest", "m.csv"], "error: --truth: give the true exposures (a table with participant_id, "
                                                    "lmm_ml, intermat_ml, imf_pct) with --manifest FILE."),
])
def test_the_cli_names_the_flag_where_python_names_the_parameter(run, phantom_dir, tmp_path, args, message):
    """The library says ``batch_size 0: ...`` and ``pass model=FOLDER``; the command line, ``--batch-size 0`` and ``--model FOLDER``."""
    common = ["--out", tmp_path / "o"] + (["--manifest", phantom_dir / "manifest.csv"] if args[0] == "segment" else [])
    res = run(*args, *common)
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output
