"""The segmentation verbs of the command line: clear one-line errors, exit status 2."""

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
