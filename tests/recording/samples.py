"""Sample data shared by the recording tests (also imported by their child processes)."""

from __future__ import annotations

import numpy as np


def ramp(n: int, start: int = 0) -> np.ndarray:
    """Distinct, sign-changing int16 samples so any shift, loss or byte swap shows."""
    return ((np.arange(start, start + n, dtype=np.int64) * 37) % 65536 - 32768).astype(np.int16)
