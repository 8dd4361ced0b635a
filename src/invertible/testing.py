"""Property checks for any `InvertibleModule`: inverse, log-det vs autograd, shapes, state.

Every check takes the module, its inputs ``xs`` (one tensor per input) and its conditions ``cs``
(``None`` for an unconditioned module) and raises ``AssertionError`` with a readable message
when the property fails. Run them in float64 for tight tolerances. The project's own test suite
runs these on every built-in block; users can run them on their own blocks, one by one or all at
once with `check_module`, which returns a report instead of raising.
"""

from __future__ import annotations

from ._check_module import CHECKS, CheckReport, CheckResult, check_module
from ._properties import (
    autograd_log_det,
    check_batch_independence,
    check_conditions_used,
    check_gradients,
    check_inputs_unchanged,
    check_jac_false,
    check_log_det_autograd,
    check_output_shapes,
    check_pickle_round_trip,
    check_reverse_round_trip,
    check_round_trip,
    check_state_dict_round_trip,
    run,
)

__all__ = [
    "CHECKS",
    "CheckReport",
    "CheckResult",
    "autograd_log_det",
    "check_batch_independence",
    "check_conditions_used",
    "check_gradients",
    "check_inputs_unchanged",
    "check_jac_false",
    "check_log_det_autograd",
    "check_module",
    "check_output_shapes",
    "check_pickle_round_trip",
    "check_reverse_round_trip",
    "check_round_trip",
    "check_state_dict_round_trip",
    "run",
]
