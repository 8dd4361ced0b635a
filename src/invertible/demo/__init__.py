"""Demos run by ``invertible demo``: small trainings on data shipped in a package or made in code.

* `run_digits`: one-class anomaly detection on scikit-learn's bundled 8x8 digits with a
  multi-scale convolutional INN (needs the ``demo`` extra: scikit-learn).
* `run_moons`: density estimation on a 2-D two-moons distribution made in code.

The plots (`invertible.demo.plots`) need matplotlib, also in the ``demo`` extra.
"""

from __future__ import annotations

from .digits import DigitsResult, run_digits
from .toy2d import MoonsResult, run_moons

__all__ = ["DigitsResult", "MoonsResult", "run_digits", "run_moons"]
