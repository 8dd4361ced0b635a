"""`SequenceINN`: a chain of single-input, single-output invertible modules."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, List, Optional, Tuple, Union

from torch import Tensor, nn

from ..modules.base import InvertibleModule, check_tensors, list_of_int_tuples
from ..modules.inverse import Inverse
from ..utils import output_dims_compatible, run_module
from ._calling import log_det_accumulator
from ._memory import MemoryEfficient, Step, run_by_inversion

__all__ = ["SequenceINN"]

Shape = Tuple[int, ...]
Conditions = Union[None, Tensor, Sequence[Tensor]]


class SequenceINN(MemoryEfficient, InvertibleModule):
    r"""A chain :math:`f = f_n \circ \dots \circ f_1` of single-input, single-output modules.

    The log-det is the sum of the blocks' log-dets; the inverse runs the blocks' inverses in
    reverse order. Blocks are added with :meth:`append`; each may take one condition, picked by
    index from the ``c`` list given at call time. What ``append`` proved (each block's input
    shape is its predecessor's output shape) is not checked again when the chain runs: a call
    checks only the input's type, rank and channel count, so a fully convolutional chain built
    for one image size runs on any other, and each block checks what its own math needs.

    Example::

        inn = SequenceINN(2)
        for _ in range(8):
            inn.append(AllInOneBlock, subnet_constructor=subnet, permute_soft=True)
        z, log_det = inn(x)
        x_rev, _ = inn(z, rev=True)

    Args:
        *dims: the input shape as separate ints, batch excluded: ``SequenceINN(3, 32, 32)``.
        force_tuple_output: return a tuple of one tensor instead of the bare tensor (needed to
            embed the chain as a module in another container).
        memory_efficient: train by inversion (also settable later as ``inn.memory_efficient``):
            while autograd records, the chain runs as one autograd Function that keeps no
            intermediate activations and recomputes each block's input from its output with the
            block's exact inverse in the backward pass (see ``invertible.framework._memory``).
            Activation memory no longer grows with depth; a step costs about one inverse per
            block more. Blocks without an exact, deterministic inverse are refused with a
            ``ValueError``. The outputs are saved for the backward pass (do not modify them in
            place). Not double-differentiable; under ``torch.compile`` the chain runs the
            standard way.

    Under ``torch.autocast`` the log-det is accumulated in (at least) float32.
    """

    def __init__(self, *dims: int, force_tuple_output: bool = False,
                 memory_efficient: bool = False) -> None:
        if len(dims) == 1 and not isinstance(dims[0], int) and hasattr(dims[0], "__len__"):
            raise TypeError(f"SequenceINN takes the input shape as separate ints, e.g. "
                            f"SequenceINN(*shape) or SequenceINN(3, 32, 32); got the single "
                            f"argument {dims[0]!r}.")
        super().__init__([dims])
        self.shapes: List[Shape] = [self.dims_in[0]]
        self.conditions: List[Optional[int]] = []
        self.module_list = nn.ModuleList()
        self.force_tuple_output = force_tuple_output
        self.memory_efficient = memory_efficient

    def _blocks_to_invert(self) -> List[Tuple[str, nn.Module]]:
        """Every module, named by its index."""
        return [(f"module {i} ({type(m).__name__})", m) for i, m in enumerate(self.module_list)]

    def append(self, module_class: Any, cond: Optional[int] = None,
               cond_shape: Optional[Sequence[int]] = None, **kwargs: Any) -> None:
        """Add a block built as ``module_class([shapes[-1]], **kwargs)``, or an instance.

        Args:
            module_class: an ``InvertibleModule`` class or factory, or a built instance whose
                ``dims_in`` must equal ``[shapes[-1]]``.
            cond: index into the ``c`` list of :meth:`forward` of the condition this block gets.
            cond_shape: shape of that condition, e.g. ``(10,)``; passed to the class as
                ``dims_c=[cond_shape]``.
            **kwargs: constructor arguments (not allowed with an instance).
        """
        dims_in = [self.shapes[-1]]
        name = getattr(module_class, "__name__", type(module_class).__name__)
        if cond is not None and (isinstance(cond, bool) or not isinstance(cond, int) or cond < 0):
            raise TypeError(f"SequenceINN.append: cond must be a non-negative int, got {cond!r}.")
        if isinstance(module_class, InvertibleModule):
            module = module_class
            if kwargs:
                raise ValueError(f"You passed an instance of {name} to SequenceINN.append, but "
                                 f"also constructor arguments {sorted(kwargs)}; give one or the "
                                 f"other.")
            if list_of_int_tuples(module.dims_in) != dims_in:
                raise ValueError(f"You passed an instance of {name} with dims_in {module.dims_in}, "
                                 f"but the previous layer's output shape is {dims_in}.")
        elif isinstance(module_class, nn.Module) or (
                isinstance(module_class, type) and not issubclass(module_class, InvertibleModule)):
            raise TypeError(f"SequenceINN.append takes an InvertibleModule class, a factory "
                            f"returning one, or an InvertibleModule instance; got {name}, which is "
                            f"not invertible.")
        else:
            if cond is not None:
                kwargs["dims_c"] = [_condition_shape(name, cond, cond_shape)]
            module = module_class(dims_in, **kwargs)
            if not isinstance(module, InvertibleModule):
                raise TypeError(f"SequenceINN.append: the factory {name} returned a "
                                f"{type(module).__name__}, not an InvertibleModule.")
        out = output_dims_compatible(module)
        if self._memory_efficient:
            self._refuse_inexact([(f"the appended {type(module).__name__}", module)])
        if len(out) != 1:
            raise ValueError(f"Module of type {type(module).__name__} has more than one output: "
                             f"{out}; a SequenceINN needs single-output modules (use a GraphINN).")
        self.module_list.append(module)
        self.shapes.append(out[0])
        self.conditions.append(cond)

    def forward(  # type: ignore[override]  # FrEIA's chain returns a bare tensor by default
            self, x_or_z: Union[Tensor, Sequence[Tensor]], c: Conditions = None, rev: bool = False,
            jac: bool = True) -> Tuple[Union[Tensor, Tuple[Tensor, ...]], Tensor]:
        """Run the chain forwards, or backwards with ``rev=True``.

        Args:
            x_or_z: a tensor ``(B, *shape)`` (or a one-element sequence of it); the extents after
                the channel axis may differ from those the chain was built with.
            c: the conditions, a list indexed by the ``cond`` given to :meth:`append` (a single
                tensor is read as ``[c]``).
            rev: run the inverse.
            jac: compute the log-det (blocks may return it anyway; it is then summed).

        Returns:
            ``(z, log_det)``: ``z`` a tensor (a 1-tuple if ``force_tuple_output``), ``log_det``
            of shape ``(B,)`` in the input's dtype (at least float32 under ``torch.autocast``).
        """
        xs, cs = self._checked_call(x_or_z, c, rev)
        if len(self) and self._by_inversion():
            order = range(len(self) - 1, -1, -1) if rev else range(len(self))
            steps = [Step(self.module_list[i], functools.partial(run_module, self.module_list[i]),
                          (k,), tuple(c for c in self.conditions[i:i + 1] if c is not None),
                          (k + 1,)) for k, i in enumerate(order)]
            (z,), log_det = run_by_inversion(steps, len(steps) + 1, ((0,), (len(steps),)),
                                             xs, cs, rev, jac)
            return ((z,) if self.force_tuple_output else z), log_det
        log_det = log_det_accumulator(xs[0])
        chain = zip(self.module_list, self.conditions)  # no ModuleList indexing (~1 us a call)
        for module, k in (reversed(list(chain)) if rev else chain):
            xs, j = run_module(module, xs, None if k is None else [cs[k]], rev, jac)
            log_det = log_det if j is None else log_det + j
        return (xs if self.force_tuple_output else xs[0]), log_det

    def _checked_call(self, x: Any, c: Conditions, rev: bool
                      ) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
        """The input as a 1-tuple and the conditions as a tuple, after the checks the first
        block cannot make: the input's type, rank and channel count (naming the container), and
        that every condition the blocks index is given and none is given to a chain without
        conditioned blocks."""
        shape = self.shapes[-1] if rev else self.shapes[0]
        if not isinstance(x, (Tensor, list, tuple)):
            raise TypeError(f"SequenceINN takes a tensor of shape (B, {', '.join(map(str, shape))})"
                            f" or a one-element list of it; got {type(x).__name__}.")
        xs = check_tensors("SequenceINN", "reverse input" if rev else "input",
                           [x] if isinstance(x, Tensor) else x, [shape], floating=False)
        cs: Tuple[Tensor, ...] = () if c is None else (c,) if isinstance(c, Tensor) else tuple(c)
        if len(self.module_list) != len(self.conditions):
            raise ValueError(f"SequenceINN holds {len(self.module_list)} modules but "
                             f"{len(self.conditions)} condition entries: module_list was changed "
                             f"directly; add modules with append(), replace them with inn[i] = m.")
        needed = max([-1] + [k for k in self.conditions if k is not None])
        if needed >= len(cs) or (cs and needed < 0):
            raise ValueError(
                f"SequenceINN has blocks conditioned on c[{needed}], but {len(cs)} condition "
                f"tensor(s) were given; pass c=[...] with at least {needed + 1}." if needed >= 0
                else f"SequenceINN has no conditioned blocks, but {len(cs)} condition tensor(s) "
                f"were given."
            )
        return tuple(xs), cs

    def output_dims(self, input_dims: Optional[List[Shape]] = None) -> List[Shape]:
        """``[shapes[-1]]``; with an argument (nesting), only for ``force_tuple_output=True``."""
        if input_dims is None:
            return [self.shapes[-1]]
        if not self.force_tuple_output:
            raise ValueError("You can only call output_dims on a SequenceINN when setting "
                             "force_tuple_output=True.")
        bare = all(isinstance(d, int) for d in input_dims)  # the shape itself, not a list
        if list_of_int_tuples([input_dims] if bare else input_dims) != self.dims_in:
            raise ValueError(f"Passed input shapes {input_dims} do not match the SequenceINN's "
                             f"input shape {self.dims_in}.")
        return [self.shapes[-1]]

    def __len__(self) -> int:
        return len(self.module_list)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.module_list)

    def __getitem__(self, item: Union[int, slice]) -> Any:
        """``inn[i]`` is a module; ``inn[a:b:s]`` a new SequenceINN sharing the modules, with the
        conditions renumbered by first appearance; a negative step inverts each module, and the
        new chain starts at the output shape of its first module."""
        if not isinstance(item, slice):
            return self.module_list[item]
        indices = range(len(self))[item]
        reverse = item.step is not None and item.step < 0
        if len(indices) == 0:
            shape = self.shapes[max(min(item.indices(len(self))[0], len(self)), 0)]
        else:
            shape = self.shapes[indices[0] + 1] if reverse else self.shapes[indices[0]]
        sub = SequenceINN(*shape, force_tuple_output=self.force_tuple_output,
                          memory_efficient=self._memory_efficient)
        renumber: dict = {}
        for i in indices:
            old = self.conditions[i]
            module = self.module_list[i]
            sub.append(Inverse(module) if reverse else module,  # type: ignore[arg-type]
                       cond=None if old is None else renumber.setdefault(old, len(renumber)))
        return sub

    def __setitem__(self, key: int, new_module: InvertibleModule) -> None:
        """Replace module ``key`` with a module of the same input, output and condition shapes."""
        if isinstance(key, slice):
            raise NotImplementedError("Setting sequence_inn[...] with slices as index is not "
                                      "supported.")
        old = self.module_list[key]
        name = type(new_module).__name__
        for what, new, was in (("input", new_module.dims_in, old.dims_in),
                               ("output", output_dims_compatible(new_module),
                                output_dims_compatible(old)),
                               ("condition", new_module.dims_c, old.dims_c)):
            if new != was:
                raise ValueError(f"The new module {name} has {what} shapes {new}, but the module "
                                 f"it replaces has {was}.")
        if self._memory_efficient:
            self._refuse_inexact([(f"the new module {name}", new_module)])
        self.module_list[key] = new_module


def _condition_shape(name: str, cond: int, cond_shape: Any) -> Shape:
    """``cond_shape`` as a tuple of ints; a ``TypeError`` naming the expected form otherwise."""
    if cond_shape is None:
        raise ValueError(f"SequenceINN.append({name}, cond={cond}) needs cond_shape, the shape of "
                         f"that condition (batch excluded), e.g. cond_shape=(10,).")
    try:
        return tuple(int(d) for d in cond_shape)
    except TypeError:
        raise TypeError(f"SequenceINN.append({name}, cond={cond}): cond_shape must be the "
                        f"condition's shape as a tuple of ints (batch excluded), e.g. "
                        f"cond_shape=({cond_shape!r},); got {cond_shape!r}.") from None
