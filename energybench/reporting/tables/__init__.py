"""Paper table specifications (one JSON file per table); see energybench.report."""
