"""Magnitude pruning of PyTorch models, so users can make sparse models for Stamen.

:func:`prune` returns a copy of a model whose ``Conv2d`` and ``Linear`` weights have their
smallest-magnitude entries set to exactly ``0.0`` (biases, BatchNorm and every other parameter are
left alone; the input model is not modified). Two patterns:

``"unstructured"`` (per layer)
    In every ``Conv2d`` / ``Linear`` weight of ``n`` entries, the ``round(amount * n)`` entries of
    smallest ``|w|`` become 0 (ties, including weights that are already 0, are broken by position
    in the flattened weight, first first). The fraction is applied **per layer**, not globally:
    every layer ends with the same sparsity, whatever the spread of its weights. A global
    threshold would compare weights across layers whose scales differ (a convolution followed by
    BatchNorm has its effective scale set by the BN, and the int8 quantizer scales every output
    channel on its own), and could empty a small layer such as the 72-weight first convolution of
    the digits LeNet.
``"2:4"`` (NVIDIA's Ampere structured sparsity)
    In every group of 4 consecutive weights along the input dimension, the 2 smallest ``|w|``
    become 0 (ties broken by position). For a ``Linear`` the input dimension is ``in_features``;
    for a ``Conv2d`` it is the flattened ``Cin/groups * KH * KW`` of each output channel, in
    PyTorch's ``(Cin, KH, KW)`` order. A row whose length is not a multiple of 4 is treated as
    padded with zeros: its last group of ``r < 4`` weights keeps ``min(r, 2)`` of them (so every
    zero-padded group of 4 has at most 2 non-zeros). ``amount`` must be ``0.5`` or omitted.

Stamen's quantizer is symmetric for weights (``w_q = round(w / s_w)``, no zero point), so a pruned
weight stays exactly 0 in int8 and the device's zero gating counts every MAC it meets as gated.
(The array's reduction order for a convolution is channel-innermost, not PyTorch's, so 2:4 groups
of a convolution are not groups of 4 consecutive array rows.) Pruning here is one-shot, without
fine-tuning.
"""
from __future__ import annotations

import copy
import math
import numbers

import torch
from torch import nn

__all__ = ["prune", "PATTERNS", "prunable_layers", "weight_sparsity"]

#: The patterns :func:`prune` accepts.
PATTERNS = ("unstructured", "2:4")
_PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return the ``(name, module)`` pairs of every ``Conv2d`` and ``Linear`` in ``model``, in
    ``named_modules`` order."""
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, _PRUNABLE)]


def weight_sparsity(model: nn.Module) -> dict[str, float]:
    """Return the fraction of exactly-zero weights of every ``Conv2d`` and ``Linear``, by name."""
    return {name: float((mod.weight == 0).sum()) / mod.weight.numel()
            for name, mod in prunable_layers(model)}


def _check_amount(amount, pattern: str) -> float:
    if pattern == "2:4":
        if amount is None:
            return 0.5
        if isinstance(amount, bool) or not isinstance(amount, numbers.Real) or amount != 0.5:
            raise ValueError(f"Prune amount must be 0.5 or omitted for pattern '2:4' (2 of every "
                             f"4 weights), not {amount!r}")
        return 0.5
    if amount is None:
        raise TypeError("Prune amount must be given for pattern 'unstructured' (a fraction in "
                        "[0, 1])")
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise TypeError(f"Prune amount must be a real number in [0, 1], not {amount!r}")
    amount = float(amount)
    if math.isnan(amount) or not 0.0 <= amount <= 1.0:
        raise ValueError(f"Prune amount must be in [0, 1], not {amount!r}")
    return amount


def _smallest_mask(mag: torch.Tensor, k: int) -> torch.Tensor:
    """Return a bool mask (shape of ``mag``) of the ``k`` smallest entries of the flattened
    ``mag``, ties broken by position."""
    flat = mag.reshape(-1)
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.sort(flat, stable=True).indices
        mask[order[:k]] = True
    return mask.reshape(mag.shape)


def _mask_unstructured(w: torch.Tensor, amount: float) -> torch.Tensor:
    k = round(amount * w.numel())
    return _smallest_mask(w.detach().abs().cpu(), k)


def _mask_2_4(w: torch.Tensor) -> torch.Tensor:
    rows = w.detach().abs().cpu().reshape(w.shape[0], -1)        # (out, in) or (out, Cin*KH*KW)
    n_in = rows.shape[1]
    pad = -n_in % 4
    groups = torch.nn.functional.pad(rows, (0, pad)).reshape(rows.shape[0], -1, 4)
    valid = torch.arange(n_in + pad) < n_in
    valid = valid.reshape(-1, 4).expand_as(groups)
    # padding sorts as the smallest values, so it takes the pruned places first
    key = torch.where(valid, groups, torch.full_like(groups, -1.0))
    order = torch.sort(key, dim=2, stable=True).indices
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(2, order[..., :2], True)
    mask &= valid
    return mask.reshape(rows.shape[0], -1)[:, :n_in].reshape(w.shape)


def prune(model: nn.Module, amount: float | None = None,
          pattern: str = "unstructured") -> nn.Module:
    """Return a copy of ``model`` with magnitude-pruned ``Conv2d`` and ``Linear`` weights.

    Parameters
    ----------
    model : torch.nn.Module
        The float model; it is deep-copied, never modified.
    amount : float
        ``"unstructured"``: the fraction in ``[0, 1]`` of each layer's weights set to 0 (see the
        module docstring; the count is ``round(amount * n)`` per layer). ``"2:4"``: ``0.5`` or
        omitted.
    pattern : str
        ``"unstructured"`` or ``"2:4"``.

    Raises
    ------
    TypeError
        When ``model`` is not a ``torch.nn.Module``, or ``amount`` is not a real number (or is
        missing for ``"unstructured"``).
    ValueError
        When ``pattern`` is unknown, ``amount`` is outside ``[0, 1]`` (or not 0.5 for ``"2:4"``),
        or the model has no ``Conv2d`` or ``Linear`` layer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Model to prune must be a torch.nn.Module, not {type(model).__name__}")
    if not isinstance(pattern, str) or pattern not in PATTERNS:
        raise ValueError(f"Prune pattern must be one of {PATTERNS}, not {pattern!r}")
    amount = _check_amount(amount, pattern)
    if not prunable_layers(model):
        raise ValueError(f"Model to prune must contain a Conv2d or Linear layer, not only "
                         f"{sorted({type(m).__name__ for m in model.modules()})}")
    out = copy.deepcopy(model)
    with torch.no_grad():
        for _, mod in prunable_layers(out):
            w = mod.weight
            mask = _mask_2_4(w) if pattern == "2:4" else _mask_unstructured(w, amount)
            w.masked_fill_(mask.to(w.device), 0.0)
    return out
