"""Reporting: paper tables (specs in tables/*.json), their cells and rendering, and figures
of several records together."""
