"""``python -m backpain_epi`` runs the command line."""

from .cli import main

main(prog_name="backpain-epi")
