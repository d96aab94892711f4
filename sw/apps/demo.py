"""The digits demo: train a small network in PyTorch (the MLP, or one of the CNNs of
``sw/apps/networks.py``), quantize, compile and run it on a Stamen device."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stamen.hw.params import AccelConfig
from stamen.sw.compiler.driver import compile_model
from stamen.sw.errors import CompileError
from stamen.sw.frontend.fx_graph import quantize_graph
from stamen.sw.apps.networks import (DIGITS_SEED, DigitsLeNet, DigitsResNet, accuracy, digits_data,
                              load_digits_split, train)
from stamen.sw.frontend.quantize import quantize
from stamen.sw.runtime.device import Device
from stamen.sw.frontend.torch_ref import REFERENCE_ENGINE, torch_quantized_forward

# DIGITS_SEED and load_digits_split live in sw/apps/networks.py (with the networks' data) and stay
# importable from here.
__all__ = ["load_digits_split", "train_mlp", "run_demo", "run_cnn_demo", "DIGITS_SEED",
           "DEMO_MODELS"]

#: ``stamen demo --model`` choices: the MLP and the two CNNs of ``sw/apps/networks.py``.
DEMO_MODELS = ("mlp", "lenet", "resnet")


def train_mlp(x_train: np.ndarray, y_train: np.ndarray, hidden: int = 32, epochs: int = 300,
              seed: int = DIGITS_SEED):
    """Train a ``Linear(64, hidden) - ReLU - Linear(hidden, 10)`` classifier (full batch, Adam)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    return model.eval()


def run_demo(cfg: AccelConfig, backend: str = "verilator", images: int = 0,
             save_dir: Path | None = None, log=print, **device_opts) -> int:
    """Run the demo end to end and print its summary table; return 0 when bit-exact, else 1.

    ``device_opts`` go to :class:`stamen.Device` (e.g. ``port="/dev/ttyUSB1"`` for ``"fpga"``).
    """
    log("loading scikit-learn digits (1797 images, 8x8)")
    x_train, y_train, x_test, y_test = load_digits_split()
    x_test, y_test = _first_images(x_test, y_test, images)
    log("training a 64-32-10 MLP in PyTorch (fixed seed)")
    model = train_mlp(x_train, y_train)
    with torch.no_grad():
        float_acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    log("quantizing (per-channel int8 weights, int8 activations)")
    qnet = quantize(model, torch.from_numpy(x_train))
    log(f"compiling for {cfg.name} ({cfg.rows}x{cfg.cols} {cfg.dataflow}), batch {len(x_test)}")
    prog = compile_model(qnet, cfg, batch=len(x_test))
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        prog.save(save_dir / "mlp.prog")
    xq = qnet.quantize_input(x_test)
    dev = Device(cfg, backend=backend, log=log, **device_opts)
    log(f"running {len(x_test)} images as one program on backend {backend!r}")
    y, report = dev.run(prog, xq)
    ref = qnet.golden(xq)
    exact = float((y == ref).mean())
    stamen_acc = float((qnet.dequantize_output(y).argmax(1) == y_test).mean())
    print()
    print(report.table())
    if save_dir is not None:
        report.to_csv(save_dir / "report.csv")
    n = len(x_test)
    rows = [("images", f"{n}"),
            ("float accuracy", f"{float_acc:.1%}"),
            ("Stamen accuracy", f"{stamen_acc:.1%}"),
            ("bit-exact vs golden", f"{exact:.1%}"),
            ("cycles per image", f"{report.cycles / n:,.0f}" if report.cycles else "n/a"),
            ("array utilization", f"{report.utilization:.1%}" if report.cycles else "n/a"),
            ("array busy share", f"{report.busy_share:.1%}" if report.cycles else "n/a"),
            ("sim cycles / wall s", f"{report.sim_cycles_per_s:,.0f}" if report.sim_wall_s
             else "n/a")]
    _summary(f"Stamen digits demo: {cfg.name} {cfg.rows}x{cfg.cols} {cfg.dataflow}, backend "
             f"{backend}", rows)
    return 0 if exact == 1.0 else 1


def _first_images(x, y, images: int):
    """Return the first ``images`` of ``(x, y)`` (all of them for 0)."""
    if not images:
        return x, y
    if not 1 <= images <= len(x):
        raise ValueError(f"--images must be in [1, {len(x)}], not {images!r}")
    return x[:images], y[:images]


def _compile_fitting(qgraph, cfg: AccelConfig, images: int, log):
    """Compile ``qgraph`` for the largest batch, at most ``images``, whose tensors fit the
    device memory (halving from ``images``)."""
    batch = images
    while True:
        log(f"compiling {len(qgraph.ops)} ops for {cfg.name} ({cfg.rows}x{cfg.cols} "
            f"{cfg.dataflow}), batch {batch}")
        try:
            return compile_model(qgraph, cfg, batch=batch)    # the cheap memory bound first
        except CompileError as e:
            if "device memory" not in str(e) or batch == 1:
                raise
            log(f"  does not fit: {e}")
            batch = -(-batch // 2)


def _summary(title: str, rows) -> None:
    width = max(len(k) for k, _ in rows)
    print()
    print(title)
    for k, v in rows:
        print(f"  {k.ljust(width)}  {v}")


def run_cnn_demo(cfg: AccelConfig, model_name: str = "lenet", backend: str = "verilator",
                 images: int = 0, save_dir: Path | None = None, log=print,
                 **device_opts) -> int:
    """Train a digits CNN (``"lenet"``: convolutions, BatchNorm, max pooling and a Linear layer;
    ``"resnet"``: a residual block, a depthwise-separable block and global average pooling),
    quantize it from its ``torch.fx`` graph, compile the whole network as one program (for the
    largest batch whose tensors fit the device memory) and run the held-out images on a Stamen
    device. Prints float, PyTorch-quantized (``torch.ao``
    operators with the same scales and zero points, on the explicit reference engine
    ``torch_ref.REFERENCE_ENGINE`` (qnnpack), so the column is the same on every x86 CPU rather
    than depending on the machine's default engine and vector extensions) and Stamen accuracy,
    and the per-layer table; returns 0 when the device output is bit-exact against ``golden``,
    else 1.
    """
    nets = {"lenet": DigitsLeNet, "resnet": DigitsResNet}
    if model_name not in nets:
        raise ValueError(f"CNN model must be one of {sorted(nets)}, not {model_name!r}")
    log("loading scikit-learn digits (1797 images, 1x8x8)")
    x_train, y_train, x_test, y_test = digits_data()
    x_test, y_test = _first_images(x_test, y_test, images)
    log(f"training {nets[model_name].__name__} in PyTorch (fixed seed, 10 epochs)")
    model = train(nets[model_name](), (x_train, y_train))
    float_acc = accuracy(model, x_test, y_test)
    log("quantizing the torch.fx graph (per-channel int8 weights, int8 activations)")
    qgraph = quantize_graph(model, x_train)
    prog = _compile_fitting(qgraph, cfg, len(x_test), log)
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        prog.save(save_dir / f"{model_name}.prog")
    xq = qgraph.quantize_input(x_test.numpy())
    labels = y_test.numpy()
    torch_q = torch_quantized_forward(qgraph, xq, engine=REFERENCE_ENGINE)
    torch_acc = float((qgraph.dequantize_output(torch_q).argmax(1) == labels).mean())
    dev = Device(cfg, backend=backend, log=log, **device_opts)
    runs = -(-len(x_test) // prog.input_shape[0])
    log(f"running {len(x_test)} images as {runs} run(s) of one program on backend {backend!r}")
    y, report = dev.run_batched(prog, xq)
    exact = float((y == qgraph.reference(xq)).mean())
    stamen_acc = float((qgraph.dequantize_output(y).argmax(1) == labels).mean())
    lsb = int(np.abs(y.astype(np.int16) - torch_q.astype(np.int16)).max())
    print()
    print(report.table())
    if save_dir is not None:
        report.to_csv(save_dir / f"{model_name}_report.csv")
    n = len(x_test)
    rows = [("model", f"{model_name}: {len(qgraph.ops)} ops, "
                      f"{sum(op.macs_per_image for op in qgraph.ops):,} MACs per image"),
            ("images", f"{n}"),
            ("float accuracy", f"{float_acc:.1%}"),
            ("PyTorch quantized accuracy", f"{torch_acc:.1%} ({REFERENCE_ENGINE})"),
            ("Stamen accuracy", f"{stamen_acc:.1%}"),
            ("bit-exact vs golden", f"{exact:.1%}"),
            ("max |Stamen - PyTorch q|", f"{lsb} LSB of the logits"),
            ("cycles per image", f"{report.cycles / n:,.0f}" if report.cycles else "n/a"),
            ("DRAM bytes / minimum", f"{report.dram_bytes / report.min_dram_bytes:.2f}"
             if report.cycles else "n/a"),
            ("zero-gated MACs", f"{report.gated_macs / report.issued_macs:.1%} of issued"
             if report.cycles else "n/a")]
    if cfg.zero_skip:
        total = report.issued_macs + report.skipped_macs
        rows.append(("skipped MACs (zero activations)",
                     f"{report.skipped_macs / total:.1%} of all" if report.cycles else "n/a"))
    rows += [("sim cycles / wall s", f"{report.sim_cycles_per_s:,.0f}" if report.sim_wall_s
             else "n/a")]
    _summary(f"Stamen digits CNN demo: {cfg.name} {cfg.rows}x{cfg.cols} {cfg.dataflow}, backend "
             f"{backend}", rows)
    return 0 if exact == 1.0 else 1
