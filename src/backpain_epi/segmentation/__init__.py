"""Segmentation stage: Dixon water/fat NIfTI in, label maps and per-participant exposures out."""
