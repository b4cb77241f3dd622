"""Data: sources and their decoding cache (sources), augmentation, and `data verify`."""
