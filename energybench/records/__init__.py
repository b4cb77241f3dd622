"""The record format: one JSON per (model, metric, protocol): its store (paths, identity, read,
schema), text (protocol lines, spreads, summaries), per-image outcomes, many records at once, and
each record's figure files."""
