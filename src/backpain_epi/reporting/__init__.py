"""Publication reports: tables, figures and the self-contained HTML report built from saved runs."""
