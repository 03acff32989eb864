"""The range of every seed in the project (simulated cohorts, training, the evaluation's held-out students).

NumPy refuses negative seeds and PyTorch ones past 64 bits; 0 to 2**31 - 1 also fits every database's integer
column, so a flag, an admin form, a stored run and a curriculum's stored evaluation protocol accept the same values.
"""
from __future__ import annotations

SEED_MIN = 0
SEED_MAX = 2**31 - 1
