"""Label schemes: how another tool's label IDs map to the package's five labels.

The package's labels (:data:`~backpain_epi.segmentation.exposures.LABEL_NAMES`) are
0 background, 1 autochthonous compartment left, 2 right, 3 psoas left, 4 psoas right
(patient left and right, from the affine). A :class:`LabelScheme` maps the IDs of a
label map made elsewhere to these; every ID not in the scheme becomes background.

Built-in schemes:

- ``backpain-epi``: the package's own IDs (1–4).
- ``totalsegmentator-total_mr``: TotalSegmentator's ``total_mr`` task, whose
  ``class_map["total_mr"]`` has ``autochthon_left`` 46, ``autochthon_right`` 47,
  ``iliopsoas_left`` 48 and ``iliopsoas_right`` 49 (the iliopsoas is taken as the psoas).

A scheme file (YAML) names its source IDs and the structures they are::

    name: my-nnunet
    labels:            # source ID: one of autochthon_left, autochthon_right, psoas_left, psoas_right
      1: autochthon_left
      2: autochthon_right
      5: psoas_left
      6: psoas_right
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import InputFileError, unknown_choice
from .exposures import LABEL_NAMES

STRUCTURES = {name: lab for lab, name in LABEL_NAMES.items()}  # autochthon_left -> 1, ...
#: other names of our structures in tools' label lists (TotalSegmentator calls the psoas "iliopsoas")
ALIASES = {"iliopsoas_left": "psoas_left", "iliopsoas_right": "psoas_right",
           "erector_spinae_left": "autochthon_left", "erector_spinae_right": "autochthon_right"}
TOTALSEG_TOTAL_MR = {46: "autochthon_left", 47: "autochthon_right", 48: "iliopsoas_left", 49: "iliopsoas_right"}


@dataclass(frozen=True)
class LabelScheme:
    """A map from source label IDs to the package's labels (1–4); other IDs are background.

    Attributes
    ----------
    name
        What the scheme is called (recorded with the exposures).
    mapping
        ``{source ID: package label}``.
    """

    name: str
    mapping: tuple[tuple[int, int], ...]

    @classmethod
    def from_names(cls, name: str, names: dict, source: str = "", param: str | None = None) -> "LabelScheme":
        """A scheme from ``{source ID: structure name}`` (package names or the aliases of :data:`ALIASES`).

        Errors start with ``source`` (default ``name``) and name the parameter ``param`` that gave the scheme.
        """
        pairs, problems = [], []
        for key, structure in names.items():
            if isinstance(key, bool) or not (isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit())):
                problems.append(f"label ID {key!r} is not an integer")
                continue
            sid = int(key)
            target = ALIASES.get(str(structure), str(structure))
            if target not in STRUCTURES:
                problems.append(f"label {sid}: {unknown_choice('structure', structure, STRUCTURES)}")
                continue
            if sid <= 0:
                problems.append(f"label ID {sid}: 0 is background and IDs are positive")
                continue
            pairs.append((sid, STRUCTURES[target]))
        missing = sorted(set(STRUCTURES) - {LABEL_NAMES[lab] for _, lab in pairs})
        if missing and not problems:
            problems.append(f"no source ID for {', '.join(missing)}")
        if problems:
            raise InputFileError(f"{source or name}: label scheme: " + "; ".join(problems) + ".", param=param)
        return cls(name, tuple(sorted(pairs)))

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """``labels`` (any integer IDs) as a uint8 map of the package's labels."""
        lut_size = int(max(max(s for s, _ in self.mapping), labels.max(initial=0))) + 1
        lut = np.zeros(lut_size, np.uint8)
        for sid, lab in self.mapping:
            lut[sid] = lab
        return lut[np.clip(labels, 0, None).astype(np.int64)]


BUILTIN = {
    "backpain-epi": LabelScheme.from_names("backpain-epi", LABEL_NAMES),
    "totalsegmentator-total_mr": LabelScheme.from_names("totalsegmentator-total_mr", TOTALSEG_TOTAL_MR),
}


def load_scheme(scheme: str | Path | LabelScheme | None, param: str = "label_scheme") -> LabelScheme:
    """A built-in scheme by name, a scheme YAML file, or a :class:`LabelScheme` (``None``: ``backpain-epi``).

    ``param`` is the name of the caller's parameter that gave ``scheme``, for the errors.

    Raises
    ------
    InputFileError
        Unknown name (with "did you mean"), unreadable or malformed file.
    """
    if isinstance(scheme, LabelScheme):
        return scheme
    if scheme is None:
        return BUILTIN["backpain-epi"]
    if str(scheme) in BUILTIN:
        return BUILTIN[str(scheme)]
    path = Path(scheme)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise InputFileError(f"{scheme}: {unknown_choice('label scheme', scheme, BUILTIN)} A scheme .yaml file works too.",
                             param=param)
    if not path.is_file():
        raise InputFileError(f"{path}: file not found.", param=param)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputFileError(f"{path}: not valid YAML ({exc.__class__.__name__}).", param=param) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("labels"), dict):
        raise InputFileError(f"{path}: expected a mapping with 'labels: {{ID: structure}}' "
                             f"(structures: {', '.join(STRUCTURES)}).", param=param)
    return LabelScheme.from_names(str(doc.get("name", path.stem)), doc["labels"], source=str(path), param=param)


def scheme_from_label_names(labels: dict, name: str, source: str, param: str | None = None) -> LabelScheme:
    """A scheme from a ``{structure name: ID}`` list such as an nnU-Net ``dataset.json``'s ``labels``.

    Names are matched to the package's structures directly or through :data:`ALIASES`;
    other names (and ``background``) are ignored.
    """
    names = {}
    for structure, sid in labels.items():
        target = ALIASES.get(str(structure), str(structure))
        if target in STRUCTURES and not isinstance(sid, (list, tuple)):
            names[int(sid)] = target
    return LabelScheme.from_names(name, names, source=source, param=param)
