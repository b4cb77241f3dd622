"""Attacks: the PGD family, the AutoAttack adapter, and the always-on attack-failure checks."""
