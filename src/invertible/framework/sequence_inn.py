"""`SequenceINN`: a chain of single-input, single-output invertible modules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..modules.base import InvertibleModule, list_of_int_tuples
from ..modules.inverse import Inverse
from ..utils import output_dims_compatible
from ._calling import call_module, log_det_accumulator, normalise_log_det
from ._memory import Step, check_blocks, run_by_inversion

__all__ = ["SequenceINN"]

Shape = Tuple[int, ...]
Conditions = Union[None, Tensor, Sequence[Tensor]]


def _module_output_dims(module: InvertibleModule, dims_in: List[Shape]) -> List[Shape]:
    """Output shapes of ``module`` given ``dims_in``; containers report theirs directly."""
    if hasattr(module, "global_out_shapes") or isinstance(module, SequenceINN):
        return output_dims_compatible(module)
    return list_of_int_tuples(module.output_dims(dims_in), "output_dims")


def _as_tuple(x: Union[Tensor, Sequence[Tensor]]) -> Tuple[Tensor, ...]:
    return (x,) if isinstance(x, Tensor) else tuple(x)


class SequenceINN(InvertibleModule):
    r"""A chain :math:`f = f_n \circ \dots \circ f_1` of single-input, single-output modules.

    The log-det is the sum of the blocks' log-dets; the inverse runs the blocks' inverses in
    reverse order. Blocks are added with :meth:`append`; each may take one condition, picked by
    index from the ``c`` list given at call time.

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
            block more (a coupling's subnets run once for both the inverse and the recompute).
            Blocks without an exact, deterministic inverse are refused with a
            ``ValueError``. The outputs are saved for the backward pass (do not modify them in
            place). Not double-differentiable; not for ``torch.compile``.

    Under ``torch.autocast`` the log-det is accumulated in (at least) float32.
    """

    _memory_efficient = False  # class default: also for objects unpickled from older versions

    def __init__(
        self, *dims: int, force_tuple_output: bool = False, memory_efficient: bool = False
    ) -> None:
        if len(dims) == 1 and not isinstance(dims[0], int) and hasattr(dims[0], "__len__"):
            raise TypeError(
                f"SequenceINN takes the input shape as separate ints, e.g. SequenceINN(*shape) "
                f"or SequenceINN(3, 32, 32); got the single argument {dims[0]!r}."
            )
        super().__init__([dims])
        self.shapes: List[Shape] = [self.dims_in[0]]
        self.conditions: List[Optional[int]] = []
        self.module_list = nn.ModuleList()
        self.force_tuple_output = force_tuple_output
        self.memory_efficient = memory_efficient

    @property
    def memory_efficient(self) -> bool:
        """Whether training recomputes activations by inversion instead of storing them."""
        return self._memory_efficient

    @memory_efficient.setter
    def memory_efficient(self, value: bool) -> None:
        if value:
            self._check_invertible(list(self.module_list))
        self._memory_efficient = bool(value)

    def _check_invertible(self, modules: List[nn.Module]) -> None:
        """``ValueError`` naming the first module that cannot be recomputed by inversion."""
        check_blocks(type(self).__name__,
                     [(f"module {i} ({type(m).__name__})", m) for i, m in enumerate(modules)])

    def append(
        self,
        module_class: Any,
        cond: Optional[int] = None,
        cond_shape: Optional[Sequence[int]] = None,
        **kwargs: Any,
    ) -> None:
        """Add a block built as ``module_class([shapes[-1]], **kwargs)``, or an instance.

        Args:
            module_class: an ``InvertibleModule`` class or factory, or a built instance whose
                ``dims_in`` must equal ``[shapes[-1]]``.
            cond: index into the ``c`` list of :meth:`forward` of the condition this block gets.
            cond_shape: shape of that condition; passed to the class as ``dims_c=[cond_shape]``.
            **kwargs: constructor arguments (not allowed with an instance).
        """
        dims_in = [self.shapes[-1]]
        if cond is not None and (isinstance(cond, bool) or not isinstance(cond, int) or cond < 0):
            raise TypeError(f"SequenceINN.append: cond must be a non-negative int, got {cond!r}.")
        if isinstance(module_class, InvertibleModule):
            module = module_class
            if kwargs:
                raise ValueError(
                    f"You passed an instance of {type(module).__name__} to SequenceINN.append, "
                    f"but also constructor arguments {sorted(kwargs)}; give one or the other."
                )
            if list_of_int_tuples(module.dims_in) != dims_in:
                raise ValueError(
                    f"You passed an instance of {type(module).__name__} with dims_in "
                    f"{module.dims_in}, but the previous layer's output shape is {dims_in}."
                )
        else:
            if cond is not None:
                if cond_shape is None:
                    raise ValueError(
                        f"SequenceINN.append({getattr(module_class, '__name__', module_class)}, "
                        f"cond={cond}) needs cond_shape, the shape of that condition."
                    )
                kwargs["dims_c"] = [tuple(cond_shape)]
            module = module_class(dims_in, **kwargs)
        out = _module_output_dims(module, dims_in)
        if self._memory_efficient:
            check_blocks(type(self).__name__, [(f"the appended {type(module).__name__}", module)])
        if len(out) != 1:
            raise ValueError(
                f"Module of type {type(module).__name__} has more than one output: {out}; "
                f"a SequenceINN needs single-output modules (use a GraphINN)."
            )
        self.module_list.append(module)
        self.shapes.append(out[0])
        self.conditions.append(cond)

    def forward(
        self,
        x_or_z: Union[Tensor, Sequence[Tensor]],
        c: Conditions = None,
        rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Union[Tensor, Tuple[Tensor, ...]], Tensor]:
        """Run the chain forwards, or backwards with ``rev=True``.

        Args:
            x_or_z: a tensor ``(B, *shape)`` (or a one-element sequence of it).
            c: the conditions, a list indexed by the ``cond`` given to :meth:`append` (a single
                tensor is read as ``[c]``).
            rev: run the inverse.
            jac: compute the log-det (blocks may return it anyway; it is then summed).

        Returns:
            ``(z, log_det)``: ``z`` a tensor (a 1-tuple if ``force_tuple_output``), ``log_det``
            of shape ``(B,)`` in the input's dtype (at least float32 under ``torch.autocast``).
        """
        xs = _as_tuple(x_or_z)
        conditions = () if c is None else _as_tuple(c)
        self._check_call(xs, conditions, rev)
        if self._memory_efficient and torch.is_grad_enabled() and len(self.module_list):
            return self._forward_by_inversion(xs, conditions, rev, jac)
        log_det = log_det_accumulator(xs[0])
        chain = zip(self.module_list, self.conditions)  # no ModuleList indexing (~1 µs a call)
        for module, k in (reversed(list(chain)) if rev else chain):
            out, j = call_module(module, xs, None if k is None else [conditions[k]], rev, jac)
            xs = _as_tuple(out)
            j = normalise_log_det(j, xs[0], type(module).__name__, jac)
            if j is not None:
                log_det = log_det + j
        return (xs if self.force_tuple_output else xs[0]), log_det

    @torch.compiler.disable  # an eager feature: under torch.compile the call runs uncompiled
    def _forward_by_inversion(
        self, xs: Tuple[Tensor, ...], conditions: Tuple[Tensor, ...], rev: bool, jac: bool
    ) -> Tuple[Union[Tensor, Tuple[Tensor, ...]], Tensor]:
        """``forward`` as one memory-efficient autograd Function (see ``memory_efficient``)."""
        self._check_invertible(list(self.module_list))  # train/eval modes may have changed
        order = range(len(self) - 1, -1, -1) if rev else range(len(self))
        steps = [
            Step(self.module_list[i], (k,), () if self.conditions[i] is None
                 else (self.conditions[i],), (k + 1,))
            for k, i in enumerate(order)
        ]
        runner = _ChainRunner(steps, rev, jac)
        (z,), log_det = run_by_inversion(runner, steps, len(steps) + 1, ((0,), (len(steps),)),
                                         xs, conditions, rev, jac)
        return ((z,) if self.force_tuple_output else z), log_det

    def _check_call(self, xs: Tuple[Tensor, ...], c: Tuple[Tensor, ...], rev: bool) -> None:
        """Validate the number and shape of inputs and that every needed condition is given."""
        expected = self.shapes[-1] if rev else self.shapes[0]
        if len(xs) != 1 or not isinstance(xs[0], Tensor):
            raise ValueError(
                f"SequenceINN expects one input tensor of shape (batch, *{expected}); got "
                f"{len(xs)} inputs."
            )
        if tuple(xs[0].shape[1:]) != expected:
            raise ValueError(
                f"SequenceINN expects {'latent' if rev else 'input'} of shape (batch, *{expected}) "
                f"but got a tensor of shape {tuple(xs[0].shape)}."
            )
        if len(self.module_list) != len(self.conditions):
            raise ValueError(
                f"SequenceINN holds {len(self.module_list)} modules but {len(self.conditions)} "
                f"condition entries: module_list was changed directly; add modules with "
                f"append() and replace them with inn[i] = module."
            )
        needed = [k for k in self.conditions if k is not None]
        if needed and max(needed) >= len(c):
            raise ValueError(
                f"SequenceINN has blocks conditioned on c[{max(needed)}], but {len(c)} "
                f"condition tensor(s) were given; pass c=[...] with at least {max(needed) + 1}."
            )

    def output_dims(self, input_dims: Optional[List[Shape]] = None) -> List[Shape]:
        """``[shapes[-1]]``; with an argument (nesting), only for ``force_tuple_output=True``."""
        if input_dims is None:
            return [self.shapes[-1]]
        if not self.force_tuple_output:
            raise ValueError(
                "You can only call output_dims on a SequenceINN when setting "
                "force_tuple_output=True."
            )
        given = (
            list_of_int_tuples(input_dims)
            if not _is_shape(input_dims)
            else [
                tuple(int(d) for d in input_dims)  # type: ignore[union-attr]
            ]
        )
        if given != self.dims_in:
            raise ValueError(
                f"Passed input shapes {input_dims} do not match the SequenceINN's input shape "
                f"{self.dims_in}."
            )
        return [self.shapes[-1]]

    def __len__(self) -> int:
        return len(self.module_list)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.module_list)

    def __getitem__(self, item: Union[int, slice]) -> Any:
        """``inn[i]`` is a module; ``inn[a:b:s]`` a new SequenceINN sharing the modules."""
        if isinstance(item, slice):
            return self._sub_sequence(item)
        return self.module_list[item]

    def _sub_sequence(self, key: slice) -> SequenceINN:
        """A SequenceINN of the selected modules; a negative step inverts each of them (D5)."""
        indices = range(len(self))[key]
        reverse = key.step is not None and key.step < 0
        if len(indices) == 0:
            start = min(key.indices(len(self))[0], len(self))
            shape = self.shapes[max(start, 0)]
        else:
            shape = self.shapes[indices[0] + 1] if reverse else self.shapes[indices[0]]
        sub = SequenceINN(*shape, force_tuple_output=self.force_tuple_output,
                          memory_efficient=self._memory_efficient)
        renumber: dict = {}
        for i in indices:
            old = self.conditions[i]
            new = None if old is None else renumber.setdefault(old, len(renumber))
            module = self.module_list[i]
            sub.append(Inverse(module) if reverse else module, cond=new)
        return sub

    def __setitem__(self, key: int, new_module: InvertibleModule) -> None:
        """Replace module ``key`` with a module of the same input, output and condition shapes."""
        if isinstance(key, slice):
            raise NotImplementedError(
                "Setting sequence_inn[...] with slices as index is not supported."
            )
        old = self.module_list[key]
        name = type(new_module).__name__
        if new_module.dims_in != old.dims_in:
            raise ValueError(
                f"The new module {name} has input shapes {new_module.dims_in}, but the module "
                f"it replaces has {old.dims_in}."
            )
        new_out = _module_output_dims(new_module, new_module.dims_in)
        old_out = _module_output_dims(old, old.dims_in)
        if new_out != old_out:
            raise ValueError(
                f"The new module {name} has output shapes {new_out}, but the module it "
                f"replaces has {old_out}."
            )
        if new_module.dims_c != old.dims_c:
            raise ValueError(
                f"The new module {name} has condition shapes {new_module.dims_c}, but the "
                f"module it replaces has {old.dims_c}."
            )
        if self._memory_efficient:
            check_blocks(type(self).__name__, [(f"the new module {name}", new_module)])
        self.module_list[key] = new_module


class _ChainRunner:
    """Runs one block of a memory-efficient SequenceINN pass in either direction."""

    def __init__(self, steps: List[Step], rev: bool, jac: bool) -> None:
        self.steps, self.rev, self.jac = steps, rev, jac

    def __call__(
        self, k: int, xs: Tuple[Tensor, ...], cs: Tuple[Any, ...], rev: bool
    ) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
        """Block ``k``'s outputs and normalised log-det (``jac=False`` when only inverting)."""
        module = self.steps[k].module
        jac = self.jac and rev == self.rev
        out, j = call_module(module, xs, list(cs) if cs else None, rev, jac)
        outs = _as_tuple(out)
        return outs, normalise_log_det(j, outs[0], type(module).__name__, jac)


def _is_shape(dims: Any) -> bool:
    """Whether ``dims`` is a bare shape such as ``(3, 32, 32)`` rather than a shape list."""
    return isinstance(dims, (tuple, list)) and all(isinstance(d, int) for d in dims)
