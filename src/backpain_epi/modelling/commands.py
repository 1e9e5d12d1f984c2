"""Command-line verbs of the modelling stage, added to ``backpain-epi`` by :mod:`backpain_epi.cli`.

Heavy libraries are imported inside the command bodies, so ``backpain-epi --help`` stays quick.
Shared options (``--dictionary``, ``--sep``, ...) come from :mod:`backpain_epi.cli_options`.
"""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
