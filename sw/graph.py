"""The quantized network graph: what ``stamen.quantize`` produces and ``stamen.compile`` consumes.

A :class:`QuantizedGraph` is a list of :class:`QOp` in topological order over named int8 tensors.
Every tensor is NHWC per image (``shape = (H, W, C)``) with one scale and zero point; the graph
input is called ``"input"`` and every op's output tensor carries the op's name. Four op kinds,
each exactly one ``sw/golden.py`` function:

``conv``    ``golden.conv2d_requant(x, w, bias, mult, shift, zp_in, zp_out, relu, stride, padding,
            groups)``; ``w`` is int8 ``(KH, KW, Cin // groups, Cout)``. A ``Linear`` is a ``conv``
            whose kernel covers its whole input (``Flatten`` + ``Linear`` over an ``H x W x C``
            tensor is a ``H x W`` valid convolution with the weights reordered from PyTorch's
            ``C, H, W`` flattening order), so its output is ``(1, 1, N)``.
``maxpool`` ``golden.maxpool2d(x, kernel, stride, padding)`` (scale and zero point unchanged).
``avgpool`` ``golden.avgpool2d(x, kernel, stride, padding, zp_in, mult, shift, zp_out)``.
``add``     ``golden.add(x1, x2, zp_in[0], zp_in[1], add_w[0], add_w[1], mult, shift, zp_out,
            relu)``.
``gemm``    ``golden.conv2d(x, w, zp_in, stride, padding, groups)``: the raw int32 accumulators,
            no requantization (``stamen.compile_gemm``); only as the graph's output.

``mult`` and ``shift`` are int32 arrays of shape ``(Cout,)`` for ``conv`` and scalars (Python
ints) for ``avgpool`` and ``add``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import golden

__all__ = ["QOp", "QuantizedGraph", "OP_KINDS"]

_ARRAYS = ("w", "bias", "mult", "shift")

OP_KINDS = ("conv", "maxpool", "avgpool", "add", "gemm")


@dataclass
class QOp:
    """One quantized op; see the module docstring for what each kind computes."""
    name: str
    kind: str
    inputs: list[str]
    zp_in: list[int]
    zp_out: int
    s_in: list[float]
    s_out: float
    out_shape: tuple[int, int, int]
    w: np.ndarray | None = None
    bias: np.ndarray | None = None
    mult: np.ndarray | int | None = None
    shift: np.ndarray | int | None = None
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    relu: bool = False
    add_w: tuple[int, int] = (1, 1)
    torch_op: str = ""
    extra: dict = field(default_factory=dict)

    def run(self, *xs: np.ndarray) -> np.ndarray:
        """Return this op's golden output for NHWC int8 inputs ``xs`` (batched)."""
        if self.kind == "conv":
            return golden.conv2d_requant(xs[0], self.w, self.bias, self.mult, self.shift,
                                         self.zp_in[0], self.zp_out, self.relu, self.stride,
                                         self.padding, self.groups)
        if self.kind == "gemm":
            return golden.conv2d(xs[0], self.w, self.zp_in[0], self.stride, self.padding,
                                 self.groups)
        if self.kind == "maxpool":
            return golden.maxpool2d(xs[0], self.kernel, self.stride, self.padding)
        if self.kind == "avgpool":
            return golden.avgpool2d(xs[0], self.kernel, self.stride, self.padding, self.zp_in[0],
                                    self.mult, self.shift, self.zp_out)
        if self.kind == "add":
            return golden.add(xs[0], xs[1], self.zp_in[0], self.zp_in[1], self.add_w[0],
                              self.add_w[1], self.mult, self.shift, self.zp_out, self.relu)
        raise ValueError(f"{self.name}: op kind must be one of {OP_KINDS}, not {self.kind!r}")

    @property
    def macs_per_image(self) -> int:
        """Useful multiply-accumulates of one image (convolutions only; 0 otherwise)."""
        if self.kind not in ("conv", "gemm"):
            return 0
        oh, ow, cout = self.out_shape
        kh, kw, cg, _ = self.w.shape
        return oh * ow * cout * kh * kw * cg


class QuantizedGraph:
    """A quantized network: ops in topological order over named NHWC int8 tensors.

    Attributes
    ----------
    ops : list[QOp]
    input_shape : tuple[int, int, int]
        ``(H, W, C)`` of one image.
    input_scale, output_scale : float
    input_zp, output_zp : int
    output : str
        The name of the op whose tensor is the network output.
    model : torch.nn.Module or None
        The float model it came from.
    """

    def __init__(self, ops: list[QOp], input_shape, input_scale: float, input_zp: int,
                 output: str | None = None, model=None):
        if not ops:
            raise ValueError("A quantized graph needs at least one op")
        self.ops = list(ops)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.input_scale = float(input_scale)
        self.input_zp = int(input_zp)
        self.output = output or self.ops[-1].name
        self.model = model
        known = {"input"}
        for op in self.ops:
            missing = [t for t in op.inputs if t not in known]
            if missing:
                raise ValueError(f"{op.name}: inputs {missing} are not produced before it")
            int32_in = [t for t in op.inputs if t != "input" and self.op(t).kind == "gemm"]
            if int32_in:
                raise ValueError(f"{op.name}: input {int32_in[0]} is a raw int32 gemm output; "
                                 f"a gemm can only be the graph output")
            known.add(op.name)
        if self.output not in known:
            raise ValueError(f"Graph output {self.output!r} is not a tensor of the graph")
        out = self.op(self.output)
        self.output_scale, self.output_zp = out.s_out, out.zp_out

    def op(self, name: str) -> QOp:
        """Return the op called ``name``."""
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(f"No op called {name!r}")

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the output of one image."""
        return self.op(self.output).out_shape

    @property
    def takes_rows(self) -> bool:
        """Whether the input is ``1 x 1 x C`` (an MLP): then :meth:`quantize_input` of ``(N, C)``
        rows gives ``(N, C)`` int8, as the compiled program takes, and :meth:`reference` of such
        rows gives ``(N, OC)`` for a ``1 x 1`` output, as the program gives."""
        return self.input_shape[:2] == (1, 1)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """Return the golden output (NHWC int8, batched) for int8 NHWC input ``x`` (for
        ``(N, C)`` rows, see :attr:`takes_rows`)."""
        x = np.asarray(x)
        rows = x.ndim == 2 and self.takes_rows
        if rows:
            x = x[:, None, None, :]
        if x.dtype != np.int8 or x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(f"Graph input must be int8 of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"not {x.dtype} {x.shape}")
        vals = {"input": x}
        for op in self.ops:
            vals[op.name] = op.run(*(vals[t] for t in op.inputs))
        y = vals[self.output]
        return y[:, 0, 0, :] if rows and y.shape[1:3] == (1, 1) else y

    def quantize_input(self, x) -> np.ndarray:
        """Return float NCHW images ``x`` (array or tensor) as int8 NHWC with the input's scale
        and zero point; for a graph whose input is ``1 x 1 x C`` (an MLP), ``(N, C)`` rows too
        (as ``(N, 1, 1, C)``)."""
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 2 and self.takes_rows:
            q = np.round(x / self.input_scale) + self.input_zp
            return np.clip(q, -128, 127).astype(np.int8)
        if x.ndim == 3:
            x = x[None]
        q = np.round(x / self.input_scale) + self.input_zp
        return np.clip(q, -128, 127).astype(np.int8).transpose(0, 2, 3, 1).copy()

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """Return int8 NHWC network outputs as float NCHW (or ``(N, C)`` for ``1 x 1`` outputs,
        given as NHWC or as ``(N, C)`` rows)."""
        f = (np.asarray(y, np.float64) - self.output_zp) * self.output_scale
        if f.ndim == 2:
            return f
        if f.shape[1:3] == (1, 1):
            return f[:, 0, 0, :]
        return f.transpose(0, 3, 1, 2)

    # -- persistence (used by Program.save / Program.load) -----------------------------------
    def to_dict(self) -> tuple[dict, dict]:
        """Return ``(meta, arrays)``: JSON-able metadata and the op arrays keyed ``op{i}_{name}``."""
        meta = {"input_shape": list(self.input_shape), "input_scale": self.input_scale,
                "input_zp": self.input_zp, "output": self.output, "ops": []}
        arrays = {}
        for i, op in enumerate(self.ops):
            d = {}
            for k, v in vars(op).items():
                if k in _ARRAYS and isinstance(v, np.ndarray):
                    arrays[f"op{i}_{k}"] = v
                elif isinstance(v, (np.integer, np.floating)):
                    d[k] = v.item()
                elif isinstance(v, tuple):
                    d[k] = list(v)
                else:
                    d[k] = v
            meta["ops"].append(d)
        return meta, arrays

    @classmethod
    def from_dict(cls, meta: dict, arrays: dict) -> "QuantizedGraph":
        """Rebuild a graph from :meth:`to_dict`'s output."""
        ops = []
        for i, d in enumerate(meta["ops"]):
            d = dict(d)
            for k in ("out_shape", "kernel", "stride", "padding", "add_w"):
                d[k] = tuple(d[k])
            for k in _ARRAYS:
                if f"op{i}_{k}" in arrays:
                    d[k] = arrays[f"op{i}_{k}"]
            ops.append(QOp(**d))
        return cls(ops, meta["input_shape"], meta["input_scale"], meta["input_zp"],
                   meta["output"])
