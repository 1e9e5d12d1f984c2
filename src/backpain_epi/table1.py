"""Table 1: the characteristics of the participants, overall and by the outcome (tableone).

The one Table 1 of the package: ``backpain-epi describe`` prints it for a whole
table and the report shows it for each model's analysed participants.
"""

from __future__ import annotations

import pandas as pd
from tableone import TableOne

from .dictionary import DataDictionary, load_dictionary


def table1(df: pd.DataFrame, columns: list[str] | None = None, dictionary: DataDictionary | None = None, *,
           outcome: str | None = None) -> pd.DataFrame:
    """Characteristics by outcome (Table 1) with tableone: n, median [Q1, Q3] or n (%), missing counts and SMD.

    Binary columns show the count with the condition; categorical ones every level in
    dictionary order. Labels carry units from the dictionary.

    Parameters
    ----------
    df
        A conformed cohort table.
    columns
        The characteristics (dictionary names); default: every covariate and exposure
        of the cohort table present in ``df``, except columns whose values are expected
        to be missing (``missing: allowed``).
    dictionary
        Data dictionary (default: the shipped one).
    outcome
        The binary column the table is split by (default: the dictionary's first outcome).
    """
    dictionary = dictionary or load_dictionary()
    outcome = outcome or dictionary.names(role="outcome")[0]
    if columns is None:
        columns = [c for c in dictionary.names(table="cohort") if c in df.columns and c != outcome
                   and dictionary[c].role in ("covariate", "exposure") and dictionary[c].missing != "allowed"]
    frame = df[[*columns, outcome]].copy()
    categorical, nonnormal, order, limit, rename = [], [], {}, {}, {}
    for c in columns:
        col = dictionary[c]
        rename[c] = col.label_with_unit()
        if col.type == "binary":
            frame[c] = frame[c].map({1: "yes", 0: "no", 1.0: "yes", 0.0: "no"})
            categorical.append(c)
            order[c], limit[c] = ["yes", "no"], 1
        elif col.type in ("category", "string"):
            categorical.append(c)
            present = [str(v) for v in frame[c].dropna().unique()]
            order[c] = [lv for lv in (col.levels or ()) if lv in present] or sorted(present)
        else:
            nonnormal.append(c)
    labels = {0: "No CBP", 1: "CBP"}
    frame[outcome] = frame[outcome].astype(int).map(labels)
    t1 = TableOne(frame, columns=columns, categorical=categorical, nonnormal=nonnormal, groupby=outcome, order={**order, outcome: list(labels.values())},
                  limit=limit, rename=rename, overall=True, missing=True, pval=False, smd=True, decimals=1,
                  include_null=False, label_suffix=True)
    table = t1.tableone.copy()
    table.columns = [c[1] if isinstance(c, tuple) else c for c in table.columns]
    table = table.rename(columns={"SMD (CBP,No CBP)": "SMD", "SMD (No CBP,CBP)": "SMD"})
    n = frame[outcome].value_counts()
    table = table.rename(columns={"Overall": f"Overall (n = {len(frame):,})", "No CBP": f"No CBP (n = {n.get('No CBP', 0):,})",
                                  "CBP": f"CBP (n = {n.get('CBP', 0):,})"})
    table = table.reset_index()
    table.columns = ["Characteristic", "Level", *table.columns[2:]]
    table["Level"] = table["Level"].replace({"yes": ""})
    table = table[table["Characteristic"] != "n"].reset_index(drop=True)
    table["Characteristic"] = table["Characteristic"].where(~table["Characteristic"].duplicated(), "")
    return table.astype(object).where(table.notna(), "")


def describe_cohort(df: pd.DataFrame, dictionary: DataDictionary | None = None) -> pd.DataFrame:
    """Table 1 of a whole conformed cohort table: every covariate and exposure, overall and by the outcome.

    The same table as the report's (:func:`table1`), for the participants of ``df``
    rather than those a model analysed.
    """
    return table1(df, dictionary=dictionary)
