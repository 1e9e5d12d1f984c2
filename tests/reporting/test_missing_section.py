"""The complete-case vs imputed section (issue 15): which runs pair up, and the table of their ORs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from backpain_epi.modelling.spec import ModelSpec
from backpain_epi.reporting.sections import SECTIONS, missing

from ..conftest import MODELS


def _run(name, dictionary, or_median, width, **extra):
    raw = yaml.safe_load((MODELS / "full.yaml").read_text()) | {"name": name, **extra}
    if "covariates" in extra:
        raw["covariates"] = extra["covariates"]
    spec = ModelSpec.from_dict(raw, dictionary)
    summary = pd.DataFrame({"term": ["intermat_ml", "age"], "label": ["InterMAT volume", "Age"], "kind": ["exposure", "covariate"],
                            "or_median": [or_median, 1.1], "or_lo95": [or_median / width, 1.0], "or_hi95": [or_median * width, 1.2]})
    data = SimpleNamespace(n_analysed=900 if extra.get("impute") else 700, imputed={"bmi": 200} if extra.get("impute") else {})
    return SimpleNamespace(name=name, spec=spec, summary=summary, provenance=SimpleNamespace(data=data))


def test_runs_that_differ_only_in_impute_are_compared(dictionary):
    cc = _run("full", dictionary, 1.3, 1.4)
    imp = _run("full_imputed", dictionary, 1.25, 1.2, impute=["bmi"])
    other = _run("other", dictionary, 1.0, 1.5, impute=["bmi"], covariates=["age", "sex", "bmi"])
    assert missing.pairs([cc, imp, other]) == [(cc, imp)]
    out = missing.missing_data(SimpleNamespace(runs=[cc, imp, other]))
    numeric = out.tables["table"].numeric
    assert list(numeric["term"]) == ["intermat_ml", "age"]
    assert numeric.loc[0, "width_ratio"] == pytest.approx(np.log(1.2) / np.log(1.4))
    assert "full_imputed" in out.lead[0] and "900" in out.lead[0] and "700" in out.lead[0]
    assert "1.25" in out.values["results_text"]


def test_no_pair_no_section(dictionary):
    out = missing.missing_data(SimpleNamespace(runs=[_run("full", dictionary, 1.3, 1.4)]))
    assert not out.shown and out.title


def test_section_follows_the_comparison():
    names = [s.__name__ for s in SECTIONS]
    assert names.index("missing_data") == names.index("comparison") + 1
