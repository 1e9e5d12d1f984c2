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


@pytest.mark.parametrize("verb", ["segment", "evaluate-segmenter", "train-segmenter", "phantoms"])
def test_the_verbs_that_read_a_table_take_the_text_table_options(run, verb):
    out = run(verb, "--help").output
    for option in ("--sep", "--encoding", "--decimal"):
        assert f"{option} " in out, f"{verb} --help lacks {option}"
    assert "latin-1" in out and "[default: utf-8]" in out


def _semicolon_copy(phantom_dir, tmp_path, decimal_comma_truth=False):
    """The phantoms in a folder named with an 'ü', their manifest (and truth) as a German spreadsheet exports them:
    ';' between fields, Latin-1 text (and decimal commas); returns (manifest, truth)."""
    import shutil

    folder = tmp_path / "Rücken"
    shutil.copytree(phantom_dir, folder)
    manifest = pd.read_csv(phantom_dir / "manifest.csv")
    for col in ("water", "fat", "label"):
        manifest[col] = "Rücken/" + manifest[col]
    manifest.to_csv(tmp_path / "manifest.csv", sep=";", index=False, encoding="latin-1")
    truth = pd.read_csv(phantom_dir / "truth_exposures.csv")
    truth.to_csv(tmp_path / "truth.csv", sep=";", index=False, encoding="latin-1", decimal="," if decimal_comma_truth else ".")
    return tmp_path / "manifest.csv", tmp_path / "truth.csv"


def test_segment_reads_a_semicolon_latin1_manifest_with_sep_and_encoding(run, phantom_dir, tmp_path):
    manifest, _ = _semicolon_copy(phantom_dir, tmp_path)
    res = run("segment", "--manifest", manifest, "--out", tmp_path / "o", "--engine", "labels")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "error:" in res.output and "not valid utf-8 text" in res.output and "(--encoding latin-1)" in res.output
    res = run("segment", "--manifest", manifest, "--out", tmp_path / "o", "--engine", "labels", "--encoding", "latin-1")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "looks semicolon-separated" in res.output and "give the delimiter (--sep ';')" in res.output
    assert not (tmp_path / "o").exists()
    res = run("segment", "--manifest", manifest, "--out", tmp_path / "o", "--engine", "labels", "--sep", ";",
              "--encoding", "latin-1", "--decimal", ",")
    assert res.exit_code == 0, res.output
    assert "Segmented 3 scan(s)" in res.output
    exposures = pd.read_csv(tmp_path / "o" / "exposures.csv")
    assert list(exposures["participant_id"]) == list(pd.read_csv(phantom_dir / "manifest.csv")["participant_id"])
    copy = pd.read_csv(tmp_path / "o" / "manifest.csv")  # written as UTF-8 with commas, the 'ü' kept
    assert copy["water"][0] == str(tmp_path / "Rücken" / "images" / f"{exposures['participant_id'][0]}_water.nii.gz")


def test_evaluate_segmenter_reads_manifest_and_truth_with_sep_encoding_and_decimal(run, phantom_dir, tmp_path):
    manifest, truth = _semicolon_copy(phantom_dir, tmp_path, decimal_comma_truth=True)
    assert "," in truth.read_text(encoding="latin-1").splitlines()[1]  # decimal commas really are there
    res = run("evaluate-segmenter", "--manifest", manifest, "--truth", truth, "--out", tmp_path / "e", "--engine", "labels",
              "--sep", ";", "--encoding", "latin-1")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output  # the truth read without --decimal ','
    assert f"error: --truth {truth}: lmm_ml '" in res.output and "is not a number (decimal commas: give --decimal ',')" in res.output
    res = run("evaluate-segmenter", "--manifest", manifest, "--truth", truth, "--out", tmp_path / "e", "--engine", "labels",
              "--sep", ";", "--encoding", "latin-1", "--decimal", ",")
    assert res.exit_code in (0, 1), res.output  # 1: a target missed (true label maps still carry partial volume)
    assert "3 scan(s) scored" in res.output
    scores = pd.read_csv(tmp_path / "e" / "evaluation.csv")
    assert len(scores) == 3 and set(scores["family"]) == {"manifest"}


@pytest.mark.parametrize("args, message", [
    # each refusal can only come from the option given: the defaults would say "not valid utf-8 text"
    (["--sep", "|", "--encoding", "latin-1"], "the header splits into one column on pipe"),
    (["--sep", ";", "--encoding", "ascii"], "not valid ascii text"),
    (["--sep", ",", "--encoding", "latin-1", "--decimal", ","], "cannot have decimal commas and comma delimiters"),
])
def test_train_segmenter_reads_its_manifest_with_the_text_table_options(run, phantom_dir, tmp_path, args, message):
    manifest, _ = _semicolon_copy(phantom_dir, tmp_path)
    res = run("train-segmenter", "--out", tmp_path / "w.pt", "--manifest", manifest, "--n-validation", 0, *args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "w.pt").exists()
