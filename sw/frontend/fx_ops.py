"""Translation of a traced ``torch.fx`` graph into float Stamen ops (before quantization).

:class:`GraphBuilder` visits the fx nodes in order and records, for each, the :class:`FxValue` it
evaluates to; nodes that compute something start an :class:`FxOp` (``conv``, ``maxpool``,
``avgpool``, ``add``) or are fused into the op before them (BatchNorm, ReLU, flatten, no-ops).
:func:`stamen.sw.frontend.fx_graph.quantize_graph` then quantizes the ops. Unsupported nodes raise
:class:`~stamen.sw.errors.CompileError` naming the node and quoting :data:`SUPPORTED`. The rules
are in ``docs/frontend.md``.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import golden
from ..errors import CompileError

__all__ = ["SUPPORTED", "FxOp", "FxValue", "GraphBuilder", "fold_batchnorm", "node_desc"]

#: What :func:`quantize_graph` accepts; quoted in every "unsupported" error message.
SUPPORTED = ("Conv2d, Linear (on (N, features) input rows, after a flatten or another Linear), "
             "BatchNorm2d (after a Conv2d), ReLU / ReLU6 (after a conv, Linear or add), "
             "MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten / flatten(1) / view(n, -1) "
             "(before a Linear), Dropout, Identity, residual add")

_RELU_FUNCS = {F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu_: "relu",
               F.relu6: "relu6"}
_RELU_METHODS = {"relu": "relu", "relu_": "relu"}
_ADD_FUNCS = (operator.add, operator.iadd, torch.add)
_ADD_METHODS = ("add", "add_")
_DROPOUT_FUNCS = (F.dropout, F.dropout2d, F.dropout1d, F.alpha_dropout, F.feature_alpha_dropout)


# -- descriptions and small helpers -------------------------------------------------------------
def _target_name(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"{type(gm.get_submodule(node.target)).__name__} {node.target!r}"
    if node.op == "call_method":
        return f".{node.target}()"
    if node.op == "call_function":
        t = node.target
        mod = {"_operator": "operator", "builtins": ""}.get(t.__module__, t.__module__ or "")
        name = getattr(t, "__name__", None) or repr(t)
        return f"{mod}.{name}" if mod else name
    return f"{node.target}"


def node_desc(gm: fx.GraphModule, node: fx.Node) -> str:
    return f"fx node {node.name!r} ({node.op} {_target_name(gm, node)})"


def _pair(v: int | tuple | list) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _is_shape_query(node: fx.Node) -> bool:
    return ((node.op == "call_method" and node.target == "size")
            or (node.op == "call_function" and node.target is getattr
                and node.args[1:] == ("shape",)))


def _arg(node: fx.Node, index: int, name: str, default: object = None) -> object:
    """Return argument ``name`` of a call node, given by position ``index`` or keyword."""
    if name in node.kwargs:
        return node.kwargs[name]
    if index < len(node.args):
        return node.args[index]
    return default


# -- BatchNorm folding (done while building) ---------------------------------------------------
def fold_batchnorm(weight: np.ndarray, bias: np.ndarray | None, bn: nn.BatchNorm2d
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Return the conv ``(weight, bias)`` (float64) with eval-mode BatchNorm ``bn`` folded in.

    ``w' = w * g`` and ``b' = (b - mean) * g + beta`` per output channel, with
    ``g = gamma / sqrt(running_var + eps)`` (``gamma = 1``, ``beta = 0`` when not affine).

    Raises
    ------
    ValueError
        When ``bn`` keeps no running statistics or its channel count differs from ``weight``'s.
    """
    w = np.asarray(weight, dtype=np.float64)
    cout = w.shape[0]
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm must track running statistics (track_running_stats=True) to "
                         "be folded")
    if bn.num_features != cout:
        raise ValueError(f"BatchNorm features must equal the conv's {cout} output channels, not "
                         f"{bn.num_features}")
    b = np.zeros(cout) if bias is None else np.asarray(bias, dtype=np.float64)
    mean = bn.running_mean.detach().double().cpu().numpy()
    var = bn.running_var.detach().double().cpu().numpy()
    gamma = (bn.weight.detach().double().cpu().numpy() if bn.weight is not None
             else np.ones(cout))
    beta = bn.bias.detach().double().cpu().numpy() if bn.bias is not None else np.zeros(cout)
    g = gamma / np.sqrt(var + bn.eps)
    return w * g.reshape(-1, *([1] * (w.ndim - 1))), (b - mean) * g + beta


# -- the graph under construction --------------------------------------------------------------
@dataclass
class FxOp:
    """A float op being built: one or more fx nodes fused into one Stamen op."""
    name: str
    kind: str
    inputs: list[str]
    out_node: fx.Node                 # last fx node of the fused chain
    in_nodes: list[fx.Node]           # the fx nodes feeding it
    out_shape: tuple[int, int, int]
    parts: list[str]
    nodes: list[str]
    w: np.ndarray | None = None       # float (Cout, Cin/g, KH, KW)
    b: np.ndarray | None = None
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    relu: str | None = None           # None, "relu" or "relu6"
    range_node: fx.Node | None = None  # where the output range is observed
    bn: bool = False
    is_conv2d: bool = False
    linear: tuple[int, int, int] | None = None
    adaptive: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class FxValue:
    """What an fx node evaluates to: an activation tensor of the graph, a flattened one (only a
    Linear may read it), the batch size or the shape (only a view / reshape may read them)."""
    kind: str                         # "act", "flat", "batch", "shape"
    tensor: str = ""
    shape: tuple[int, int, int] = (1, 1, 1)
    ndim: int = 4                     # PyTorch rank: 4 (NCHW) or 2 (N, features)
    op: FxOp | None = None
    node: fx.Node | None = None       # the flatten node of a "flat" value


class GraphBuilder:
    """Turn the live nodes of a traced module into ops (:class:`FxOp`), one :meth:`visit` per node.

    ``gm`` is the traced module, ``shapes`` the per-sample output shape of each node seen in
    calibration (:func:`~stamen.sw.frontend.fx_graph.observe_ranges`) and ``live`` the nodes that
    reach the output. After the last node, ``ops`` holds the ops in graph order, ``vals`` what
    each node evaluates to and ``output`` the name of the output tensor.
    """
    def __init__(self, gm: fx.GraphModule, shapes: dict, live: set) -> None:
        self.gm = gm
        self.shapes = shapes
        self.live = live
        self.vals: dict[fx.Node, FxValue] = {}
        self.ops: list[FxOp] = []
        self.names: set[str] = {"input"}
        self.output: str | None = None

    # -- errors and input access
    def err(self, node: fx.Node, msg: str) -> CompileError:
        return CompileError(f"{node_desc(self.gm, node)}: {msg}")

    def unsupported(self, node: fx.Node, why: str = "not supported") -> CompileError:
        return self.err(node, f"{why}; supported: {SUPPORTED}")

    def val(self, node: fx.Node, arg) -> FxValue:
        if not isinstance(arg, fx.Node):
            raise self.err(node, f"needs a tensor input, not the constant {arg!r}")
        return self.vals[arg]

    def act(self, node: fx.Node, arg, ndim: int | None = 4) -> FxValue:
        v = self.val(node, arg)
        if v.kind == "flat":
            raise self.err(v.node, f"a flatten must be followed by a Linear, but "
                                   f"{node_desc(self.gm, node)} uses it")
        if v.kind != "act":
            raise self.err(node, f"needs a tensor input, not the {v.kind} of a tensor")
        if ndim is not None and v.ndim != ndim:
            raise self.err(node, f"needs a {ndim}-D input, not the {v.ndim}-D output of "
                                 f"{node_desc(self.gm, arg)}")
        return v

    def new_op(self, node: fx.Node, kind: str, ins: list[fx.Node], inputs: list[str],
               out_shape, **kw) -> FxOp:
        name = node.name
        while name in self.names:
            name = name + "_"
        self.names.add(name)
        op = FxOp(name=name, kind=kind, inputs=inputs, out_node=node, in_nodes=ins,
                 out_shape=tuple(int(v) for v in out_shape), parts=[self.part(node)],
                 nodes=[node.name], range_node=node, **kw)
        self.ops.append(op)
        return op

    def part(self, node: fx.Node) -> str:
        return f"{node.name}: {_target_name(self.gm, node)}"

    def check_shape(self, node: fx.Node, shape: tuple[int, int, int], ndim: int = 4):
        seen = self.shapes.get(node.name)
        want = (shape[2], shape[0], shape[1]) if ndim == 4 else (shape[2],)
        if seen is not None and tuple(seen) != want:
            raise self.err(node, f"computed output shape {want} differs from the traced {seen}")

    def fusable(self, node: fx.Node, arg) -> FxOp | None:
        """Return the op whose fused chain ends at ``arg``, if ``node`` is its only user."""
        if not isinstance(arg, fx.Node):
            return None
        v = self.vals.get(arg)
        if v is None or v.kind != "act" or v.op is None:
            return None
        op = v.op
        if op.out_node is not arg or len(self.users(arg)) != 1:
            return None
        return op

    def users(self, node: fx.Node) -> list[fx.Node]:
        """Return the live users of ``node`` that read its values (not only its shape)."""
        return [u for u in node.users if u in self.live and not _is_shape_query(u)]

    def extend(self, op: FxOp, node: fx.Node):
        op.out_node = node
        op.parts.append(self.part(node))
        op.nodes.append(node.name)

    def alias(self, node: fx.Node, arg: fx.Node) -> None:
        v = self.val(node, arg)
        self.vals[node] = v
        op = self.fusable(node, arg) if v.kind == "act" else None
        if op is not None:
            op.out_node = node
            op.nodes.append(node.name)

    # -- node kinds
    def placeholder(self, node: fx.Node):
        if any(v.tensor == "input" for v in self.vals.values()):
            raise self.err(node, "the model must take exactly one input (a batch of NCHW images "
                                 "or of feature rows)")
        shape = self.shapes.get(node.name)
        if shape is not None and len(shape) == 1:        # (N, features): an MLP
            self.vals[node] = FxValue("act", "input", (1, 1, shape[0]), 2)
            return
        if shape is None or len(shape) != 3:
            raise self.err(node, f"the input must be a batch of NCHW images or of feature rows, "
                                 f"not per-sample shape {shape}")
        c, h, w = shape
        self.vals[node] = FxValue("act", "input", (h, w, c), 4)

    def conv(self, node: fx.Node, mod: nn.Conv2d):
        x = self.act(node, node.args[0])
        if mod.padding_mode != "zeros":
            raise self.err(node, f"padding_mode must be 'zeros', not {mod.padding_mode!r}")
        if tuple(mod.dilation) != (1, 1):
            raise self.err(node, f"dilation must be 1, not {tuple(mod.dilation)}")
        kh, kw = mod.kernel_size
        if isinstance(mod.padding, str):
            if mod.padding == "valid":
                pad = (0, 0)
            elif kh % 2 and kw % 2:
                pad = ((kh - 1) // 2, (kw - 1) // 2)
            else:
                raise self.err(node, f"padding='same' needs an odd kernel (symmetric padding), "
                                     f"not {mod.kernel_size}")
        else:
            pad = _pair(mod.padding)
        stride = _pair(mod.stride)
        h, w, _ = x.shape
        oh, ow = (golden.conv_out_size(h, kh, stride[0], pad[0]),
                  golden.conv_out_size(w, kw, stride[1], pad[1]))
        out = (oh, ow, mod.out_channels)
        self.check_shape(node, out)
        wt = mod.weight.detach().double().cpu().numpy()
        b = mod.bias.detach().double().cpu().numpy() if mod.bias is not None else None
        op = self.new_op(node, "conv", [node.args[0]], [x.tensor], out, w=wt, b=b,
                         kernel=(kh, kw), stride=stride, padding=pad, groups=mod.groups,
                         is_conv2d=True)
        self.vals[node] = FxValue("act", op.name, out, 4, op)

    def linear(self, node: fx.Node, mod: nn.Linear):
        src = node.args[0]
        v = self.val(node, src)
        if v.kind == "flat":
            h, w, c = v.shape
        elif v.kind == "act" and v.ndim == 2:
            h, w, c = v.shape
        elif v.kind == "act":
            raise self.err(node, f"a Linear needs a flattened input (Flatten, flatten(1) or "
                                 f"view(n, -1)) or the output of another Linear, not the "
                                 f"{v.shape[0]}x{v.shape[1]}x{v.shape[2]} (HxWxC) tensor of "
                                 f"{node_desc(self.gm, src)}")
        else:
            raise self.err(node, f"needs a tensor input, not the {v.kind} of a tensor")
        if mod.in_features != h * w * c:
            raise self.err(node, f"in_features {mod.in_features} must equal the flattened "
                                 f"input size {c}x{h}x{w} = {h * w * c}")
        wt = mod.weight.detach().double().cpu().numpy().reshape(mod.out_features, c, h, w)
        b = mod.bias.detach().double().cpu().numpy() if mod.bias is not None else None
        out = (1, 1, mod.out_features)
        self.check_shape(node, out, ndim=2)
        op = self.new_op(node, "conv", [src], [v.tensor], out, w=wt, b=b, kernel=(h, w),
                         linear=(h, w, c))
        if v.kind == "flat":
            op.parts.insert(0, self.part(v.node))
        self.vals[node] = FxValue("act", op.name, out, 2, op)

    def batchnorm(self, node: fx.Node, mod: nn.Module):
        if not isinstance(mod, nn.BatchNorm2d):
            raise self.unsupported(node, "only BatchNorm2d (after a Conv2d) is supported")
        self.act(node, node.args[0])
        op = self.fusable(node, node.args[0])
        if op is None or not op.is_conv2d or op.bn or op.relu:
            raise self.err(node, "a BatchNorm2d must directly follow a Conv2d whose only user it "
                                 "is (it is folded into the conv)")
        try:
            op.w, op.b = fold_batchnorm(op.w, op.b, mod)
        except ValueError as e:
            raise self.err(node, str(e)) from None
        op.bn = True
        self.extend(op, node)
        op.range_node = node
        self.vals[node] = self.vals[node.args[0]]

    def relu(self, node: fx.Node, kind: str):
        arg = node.args[0] if node.args else node.kwargs.get("input")
        self.act(node, arg, ndim=None)
        op = self.fusable(node, arg)
        if op is not None and op.kind in ("conv", "add") and op.relu is None:
            op.relu = kind
            self.extend(op, node)
            op.range_node = node
            self.vals[node] = self.vals[arg]
            return
        if op is not None and op.kind == "maxpool":
            src = op.in_nodes[0]
            inner = self.fusable(op.out_node, src)
            if inner is not None and inner.kind in ("conv", "add") and inner.relu is None:
                # relu(maxpool(x)) == maxpool(relu(x)): fuse into the op before the pool; its
                # output range is the observed one clipped at 0 (range_node stays pre-ReLU).
                inner.relu = kind
                inner.parts.append(self.part(node) + " (moved before " + op.name + ")")
                inner.nodes.append(node.name)
                op.out_node = node
                self.vals[node] = self.vals[arg]
                return
        raise self.err(node, "a ReLU / ReLU6 must directly follow a conv, Linear or add (or a "
                             "max-pool of one) whose only user it is, so that it can be fused")

    def pool(self, node: fx.Node, kind: str, kernel, stride, padding, dilation, ceil_mode,
             count_include_pad=True, divisor_override=None, return_indices=False,
             adaptive=False):
        src = node.args[0] if node.args else node.kwargs.get("input")
        x = self.act(node, src)
        h, w, c = x.shape
        if adaptive:
            osz = tuple(kernel) if isinstance(kernel, (tuple, list)) else (kernel, kernel)
            osz = tuple(d if o is None else o for o, d in zip(osz * (2 // len(osz)), (h, w)))
            if osz == (h, w):
                self.alias(node, src)
                return
            if osz != (1, 1):
                raise self.err(node, f"adaptive average pooling needs an output size of 1 "
                                     f"(a global average), not {kernel!r}")
            kernel, stride, padding = (h, w), (h, w), (0, 0)
        else:
            kernel = _pair(kernel)
            stride = kernel if stride is None or stride == [] or stride == () else _pair(stride)
            padding = _pair(padding)
            if _pair(dilation) != (1, 1):
                raise self.err(node, f"dilation must be 1, not {dilation!r}")
            if ceil_mode:
                raise self.err(node, "ceil_mode must be False")
            if return_indices:
                raise self.err(node, "return_indices must be False")
            if divisor_override is not None:
                raise self.err(node, f"divisor_override must be None, not {divisor_override!r}")
            if not count_include_pad and padding != (0, 0):
                raise self.err(node, "count_include_pad must be True when padded")
            if min(kernel) < 1 or min(stride) < 1 or padding[0] > kernel[0] // 2 or \
                    padding[1] > kernel[1] // 2:
                raise self.err(node, f"kernel {kernel}, stride {stride} and padding {padding} "
                                     f"are not a valid pooling window")
        oh = golden.conv_out_size(h, kernel[0], stride[0], padding[0])
        ow = golden.conv_out_size(w, kernel[1], stride[1], padding[1])
        out = (oh, ow, c)
        self.check_shape(node, out)
        if kind == "avgpool" and kernel == (1, 1):
            if stride == (1, 1):               # an average of one element is a copy
                self.alias(node, src)
                return
            kind = "maxpool"                   # ... and a strided one a 1x1 max-pool
        op = self.new_op(node, kind, [src], [x.tensor], out, kernel=kernel,
                         stride=stride, padding=padding, adaptive=adaptive)
        self.vals[node] = FxValue("act", op.name, out, 4, op)

    def add(self, node: fx.Node, a, b, alpha=1):
        if alpha != 1:
            raise self.err(node, f"an add must have alpha=1, not {alpha!r}")
        if not isinstance(a, fx.Node) or not isinstance(b, fx.Node):
            raise self.unsupported(node, "an add of a tensor and a constant is not supported "
                                         "(only a residual add of two tensors)")
        va, vb = self.act(node, a, ndim=None), self.act(node, b, ndim=None)
        if va.shape != vb.shape or va.ndim != vb.ndim:
            raise self.err(node, f"a residual add needs inputs of equal shape (no broadcasting),"
                                 f" not {va.shape} and {vb.shape} (HxWxC)")
        self.check_shape(node, va.shape, va.ndim)
        op = self.new_op(node, "add", [a, b], [va.tensor, vb.tensor], va.shape)
        self.vals[node] = FxValue("act", op.name, va.shape, va.ndim, op)

    def flatten(self, node: fx.Node, start_dim, end_dim):
        x = self.act(node, node.args[0], ndim=None)
        if x.ndim == 2:
            if start_dim in (1, -1) and end_dim in (-1, 1):
                self.alias(node, node.args[0])
                return
        elif start_dim == 1 and end_dim in (-1, 3):
            self.vals[node] = FxValue("flat", x.tensor, x.shape, 4, x.op, node)
            return
        raise self.err(node, f"a flatten must keep the batch dimension and flatten the rest "
                             f"(start_dim=1, end_dim=-1), not start_dim={start_dim}, "
                             f"end_dim={end_dim}")

    def view(self, node: fx.Node, dims):
        x = self.act(node, node.args[0], ndim=None)
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        h, w, c = x.shape
        total = h * w * c

        def is_batch(d):
            return isinstance(d, fx.Node) and self.vals.get(d, FxValue("none")).kind == "batch"

        shown = tuple(d.name if isinstance(d, fx.Node) else d for d in dims)
        ok = len(dims) == 2 and ((is_batch(dims[0]) and (dims[1] == -1 or dims[1] == total))
                                 or (dims[0] == -1 and dims[1] == total))
        if not ok:
            raise self.err(node, f"a view / reshape is supported only as a flatten before a "
                                 f"Linear: (x.size(0), -1), (x.shape[0], -1) or (-1, {total}), "
                                 f"not {shown}")
        if x.ndim == 2:
            self.alias(node, node.args[0])
        else:
            self.vals[node] = FxValue("flat", x.tensor, x.shape, 4, x.op, node)

    # -- dispatch
    def visit(self, node: fx.Node):
        if node.op == "placeholder":
            return self.placeholder(node)
        if node.op == "output":
            return self.finish(node)
        if node.op == "get_attr":
            raise self.unsupported(node, "parameters or buffers used outside a module are not "
                                         "supported")
        if node.op == "call_module":
            return self.visit_module(node, self.gm.get_submodule(node.target))
        if node.op == "call_function":
            return self.visit_function(node)
        if node.op == "call_method":
            return self.visit_method(node)
        raise self.unsupported(node)

    def visit_module(self, node: fx.Node, mod: nn.Module):
        if type(mod) is nn.Conv2d or (isinstance(mod, nn.Conv2d) and type(mod).forward is
                                      nn.Conv2d.forward):
            return self.conv(node, mod)
        if isinstance(mod, nn.Linear) and type(mod).forward is nn.Linear.forward:
            return self.linear(node, mod)
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            return self.batchnorm(node, mod)
        if isinstance(mod, nn.ReLU):
            return self.relu(node, "relu")
        if isinstance(mod, nn.ReLU6):
            return self.relu(node, "relu6")
        if isinstance(mod, nn.MaxPool2d):
            return self.pool(node, "maxpool", mod.kernel_size, mod.stride, mod.padding,
                             mod.dilation, mod.ceil_mode, return_indices=mod.return_indices)
        if isinstance(mod, nn.AvgPool2d):
            return self.pool(node, "avgpool", mod.kernel_size, mod.stride, mod.padding, 1,
                             mod.ceil_mode, mod.count_include_pad, mod.divisor_override)
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            return self.pool(node, "avgpool", mod.output_size, None, 0, 1, False, adaptive=True)
        if isinstance(mod, nn.Flatten):
            return self.flatten(node, mod.start_dim, mod.end_dim)
        if isinstance(mod, (nn.modules.dropout._DropoutNd, nn.Identity)):
            return self.alias(node, node.args[0])
        raise self.unsupported(node)

    def visit_function(self, node: fx.Node):
        t = node.target
        if t in _RELU_FUNCS:
            return self.relu(node, _RELU_FUNCS[t])
        if t in _ADD_FUNCS:
            if len(node.args) < 2:
                raise self.unsupported(node)
            return self.add(node, node.args[0], node.args[1], node.kwargs.get("alpha", 1))
        if t is torch.flatten:
            return self.flatten(node, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))
        if t is torch.reshape:
            return self.view(node, (_arg(node, 1, "shape"),))
        if t is F.max_pool2d:
            return self.pool(node, "maxpool", _arg(node, 1, "kernel_size"),
                             _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                             _arg(node, 4, "dilation", 1), _arg(node, 5, "ceil_mode", False),
                             return_indices=_arg(node, 6, "return_indices", False))
        if t is F.avg_pool2d:
            return self.pool(node, "avgpool", _arg(node, 1, "kernel_size"),
                             _arg(node, 2, "stride"), _arg(node, 3, "padding", 0), 1,
                             _arg(node, 4, "ceil_mode", False),
                             _arg(node, 5, "count_include_pad", True),
                             _arg(node, 6, "divisor_override"))
        if t is F.adaptive_avg_pool2d:
            return self.pool(node, "avgpool", _arg(node, 1, "output_size"), None, 0, 1, False,
                             adaptive=True)
        if t in _DROPOUT_FUNCS:
            if _arg(node, 2, "training", True):
                raise self.err(node, "dropout must not be in training mode")
            return self.alias(node, node.args[0])
        if t is getattr and len(node.args) == 2 and node.args[1] == "shape":
            self.val(node, node.args[0])
            self.vals[node] = FxValue("shape")
            return
        if t is operator.getitem and isinstance(node.args[0], fx.Node) and \
                self.vals.get(node.args[0], FxValue("none")).kind == "shape":
            if node.args[1] != 0:
                raise self.err(node, f"only the batch size (index 0) of a shape may be used, "
                                     f"not index {node.args[1]!r}")
            self.vals[node] = FxValue("batch")
            return
        raise self.unsupported(node)

    def visit_method(self, node: fx.Node):
        t = node.target
        if t in _RELU_METHODS:
            return self.relu(node, _RELU_METHODS[t])
        if t in _ADD_METHODS:
            if len(node.args) < 2:
                raise self.unsupported(node)
            return self.add(node, node.args[0], node.args[1], node.kwargs.get("alpha", 1))
        if t == "flatten":
            return self.flatten(node, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))
        if t in ("view", "reshape"):
            return self.view(node, tuple(node.args[1:]))
        if t == "size":
            self.val(node, node.args[0])
            dim = _arg(node, 1, "dim")
            if dim is None:
                self.vals[node] = FxValue("shape")
            elif dim == 0:
                self.vals[node] = FxValue("batch")
            else:
                raise self.err(node, f"only the batch size x.size(0) may be used, not "
                                     f"x.size({dim!r})")
            return
        if t in ("contiguous", "float"):
            return self.alias(node, node.args[0])
        raise self.unsupported(node)

    def finish(self, node: fx.Node):
        arg = node.args[0]
        if not isinstance(arg, fx.Node):
            raise self.err(node, "the model must return one tensor")
        v = self.vals[arg]
        if v.kind == "flat":
            raise self.err(v.node, "a flatten must be followed by a Linear, but it is the "
                                   "network output")
        if v.kind != "act" or v.op is None:
            raise self.err(node, "the model must return a tensor computed by at least one "
                                 "conv, Linear, pool or add")
        self.output = v.tensor
