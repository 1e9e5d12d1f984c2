"""The ``backpain-epi`` command line: a thin shell over the Python API (click).

:mod:`.main` holds the group and the foundation's verbs; each stage's verbs live
in a module of their own (:mod:`.segmentation`, :mod:`.modelling`,
:mod:`.reporting`, :mod:`.pipeline`), with the options they share in
:mod:`.options`. The command modules import the package's heavy parts (pandas,
PyMC, torch) inside the command bodies, so that ``backpain-epi --help`` is quick.
"""

from .main import main

__all__ = ["main"]
