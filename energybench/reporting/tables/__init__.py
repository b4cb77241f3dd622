"""Paper table specifications (one JSON file per table); see energybench.reporting.report."""
