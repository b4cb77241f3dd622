"""Energies E(x, y) and E(x), SGLD, and sample generation from energy models."""
