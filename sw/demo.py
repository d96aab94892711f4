"""The digits demo: train a small MLP in PyTorch, quantize, compile and run it on a Stamen device."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stamen.hw.params import AccelConfig

__all__ = ["load_digits_split", "train_mlp", "run_demo", "DIGITS_SEED"]

DIGITS_SEED = 0


def load_digits_split(seed: int = DIGITS_SEED):
    """Return ``(x_train, y_train, x_test, y_test)`` of scikit-learn's digits, pixels scaled to [0, 1].

    A fixed 80/20 split: 1437 training and 360 held-out images of 8x8 = 64 pixels.
    """
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = int(0.8 * len(x))
    tr, te = order[:n_train], order[n_train:]
    return x[tr], y[tr], x[te], y[te]


def train_mlp(x_train: np.ndarray, y_train: np.ndarray, hidden: int = 32, epochs: int = 300,
              seed: int = DIGITS_SEED):
    """Train a ``Linear(64, hidden) - ReLU - Linear(hidden, 10)`` classifier (full batch, Adam)."""
    import torch
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
    import torch

    from stamen.sw.compiler import compile_model
    from stamen.sw.quantize import quantize
    from stamen.sw.runtime import Device

    log("loading scikit-learn digits (1797 images, 8x8)")
    x_train, y_train, x_test, y_test = load_digits_split()
    if images:
        if not 1 <= images <= len(x_test):
            raise ValueError(f"--images must be in [1, {len(x_test)}], not {images!r}")
        x_test, y_test = x_test[:images], y_test[:images]
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
    width = max(len(k) for k, _ in rows)
    print()
    print(f"Stamen digits demo: {cfg.name} {cfg.rows}x{cfg.cols} {cfg.dataflow}, backend {backend}")
    for k, v in rows:
        print(f"  {k.ljust(width)}  {v}")
    return 0 if exact == 1.0 else 1
