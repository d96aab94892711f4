"""The one table of GEMM / Linear cases used by every tier (golden, isasim, Amaranth, Verilator).

A case is ``(name, m, k, n, density, seed)`` plus ``fill``: ``"random"`` (uniform int8, a fraction
``1 - density`` of activations set to the real zero ``zp`` and of weights set to 0), ``"extreme"``
(only -128 / 127 activations and weights, zp = -128 or 127 so |a - zp| reaches 255) or ``"zero"``
(all activations at the zero point). ``small`` marks cases cheap enough for the slow RTL tiers.

``LOOP_CASES`` are hand-built programs (``make_loop_program``: a memory image and the ``golden``
result) that walk convolution and pooling windows with LOOP, pool with ``acc_max``, add with
``wt_repeat``, and overrun the act spad; the Amaranth and Verilator device tiers run them against
IsaSim and golden.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Case", "CASES", "SMALL_CASES", "make_gemm", "make_linear", "LoopCase", "LOOP_CASES",
           "LoopProgram", "make_loop_program"]


class Case(NamedTuple):
    name: str
    m: int
    k: int
    n: int
    density: float
    seed: int
    fill: str = "random"
    small: bool = True

    def __str__(self) -> str:
        return f"{self.name}-m{self.m}k{self.k}n{self.n}-d{self.density}-s{self.seed}"


CASES: list[Case] = [
    Case("one", 1, 1, 1, 1.0, 1),
    Case("m1", 1, 16, 8, 1.0, 2),
    Case("k1", 8, 1, 8, 1.0, 3),
    Case("n1", 8, 16, 1, 1.0, 4),
    Case("exact8", 8, 8, 8, 1.0, 5),
    Case("exact16", 16, 16, 16, 1.0, 6),
    Case("odd", 5, 13, 7, 1.0, 7),
    Case("odd2", 17, 23, 9, 1.0, 8),
    Case("odd3", 33, 15, 19, 1.0, 9),
    Case("not16", 24, 40, 20, 1.0, 10),
    Case("sparse50", 16, 32, 16, 0.5, 11),
    Case("sparse10", 12, 24, 12, 0.1, 12),
    Case("dense_big", 64, 64, 64, 1.0, 13, small=False),
    Case("extreme", 9, 17, 11, 1.0, 14, fill="extreme"),
    Case("extreme_big", 20, 200, 12, 1.0, 15, fill="extreme", small=False),
    Case("zeros", 8, 16, 8, 1.0, 16, fill="zero"),
    Case("zeros_odd", 3, 5, 6, 0.0, 17, fill="zero"),
    Case("tall", 37, 3, 5, 0.8, 18),
    Case("wide", 3, 5, 70, 0.8, 19),
    # tiny preset (4x2 array, acc/out depth 256, wt depth 256, act depth 512): M tiling ...
    Case("mtile_tiny", 300, 10, 6, 0.7, 20, small=False),
    # ... and K chunking (ceil(300/4) = 75 k-tiles x 4 rows > 256 weight rows)
    Case("kchunk_tiny", 20, 300, 5, 0.7, 21, small=False),
    # small preset (8x8, wt 1024, act 1024): 160 k-tiles x 8 rows > 1024 weight rows
    Case("kchunk_small", 10, 1280, 10, 0.9, 22, small=False),
    Case("big_all", 70, 140, 33, 0.6, 23, small=False),
]

SMALL_CASES = [c for c in CASES if c.small]


def make_gemm(case: Case) -> tuple[np.ndarray, np.ndarray, int]:
    """Return ``(x int8 (m, k), w int8 (k, n), zp)`` for ``case`` from ``default_rng(seed)``."""
    rng = np.random.default_rng(case.seed)
    if case.fill == "extreme":
        zp = int(rng.choice([-128, 127]))
        x = rng.choice(np.array([-128, 127], np.int8), size=(case.m, case.k))
        w = rng.choice(np.array([-128, 127], np.int8), size=(case.k, case.n))
        return x.astype(np.int8), w.astype(np.int8), zp
    zp = int(rng.integers(-128, 128))
    x = rng.integers(-128, 128, size=(case.m, case.k), dtype=np.int8)
    w = rng.integers(-128, 128, size=(case.k, case.n), dtype=np.int8)
    if case.fill == "zero":
        x[:] = zp
    else:
        x[rng.random((case.m, case.k)) >= case.density] = zp
        w[rng.random((case.k, case.n)) >= case.density] = 0
    return x, w, zp


def make_linear(case: Case) -> dict:
    """Return a random quantized Linear layer for ``case``: a dict with ``x, w, bias, mult, shift,
    zp_in, zp_out, relu`` (``mult`` in [2**30, 2**31), ``shift`` in 0..31), the arguments of
    ``golden.linear``."""
    x, w, zp = make_gemm(case)
    rng = np.random.default_rng(case.seed + 1_000_003)
    n = case.n
    # a shift that keeps typical outputs in the int8 range, jittered over the whole 0..31 span
    typical = max(1.0, 128.0 * 64.0 * np.sqrt(case.k))
    base = int(np.clip(np.round(np.log2(typical / 64.0)), 0, 31))
    shift = np.clip(base + rng.integers(-3, 4, n), 0, 31).astype(np.int32)
    shift[rng.random(n) < 0.1] = rng.integers(0, 32)                   # some extremes
    mult = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64).astype(np.int32)
    bias = rng.integers(-(1 << 16), 1 << 16, n, dtype=np.int64).astype(np.int32)
    if case.fill == "extreme":
        bias[::2] = np.int32(-(1 << 31))
        bias[1::2] = np.int32((1 << 31) - 1)
    zp_out = int(rng.integers(-128, 128))
    relu = bool(case.seed % 2)
    return {"x": x, "w": w, "bias": bias, "mult": mult, "shift": shift, "zp_in": zp,
            "zp_out": zp_out, "relu": relu}


# -- hand-built LOOP programs (address generator, acc_max, wt_repeat) for the device tiers ------
class LoopCase(NamedTuple):
    """A hand-built program on one NHWC image (``h x w x c``, batch 1) that walks windows in the
    act spad with LOOP, without im2col copies.

    ``kind`` is ``"conv"`` (a ``kernel x kernel`` convolution to ``cout`` channels: one MATMUL,
    kernel column / kernel row / channel chunk on the ``kt`` levels and output column / row on the
    ``i`` levels), ``"maxpool"`` (per channel chunk a MATMUL with ``acc_max`` and a repeated
    identity weight tile) or ``"add"`` (a residual add of two images: ``wt_repeat`` with a scaled
    identity over two tiles, then REQUANT). ``overrun`` sets ``k_stride2`` to the ACT depth, so
    the second channel chunk is read beyond the act spad: the MATMUL faults with SPAD_RANGE.
    """
    name: str
    kind: str
    h: int
    w: int
    c: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    cout: int = 0
    seed: int = 0
    overrun: bool = False

    def __str__(self) -> str:
        return (f"{self.name}-{self.kind}-{self.h}x{self.w}x{self.c}-k{self.kernel}"
                f"s{self.stride}p{self.padding}-s{self.seed}")


LOOP_CASES: list[LoopCase] = [
    LoopCase("conv3x3s2", "conv", 7, 7, 4, kernel=3, stride=2, padding=1, cout=4, seed=31),
    LoopCase("conv3x3s1", "conv", 5, 6, 3, kernel=3, stride=1, cout=3, seed=32),
    LoopCase("conv2x2s2", "conv", 6, 5, 5, kernel=2, stride=2, padding=1, cout=2, seed=33),
    LoopCase("conv1x1", "conv", 4, 3, 5, kernel=1, stride=1, cout=4, seed=34),   # wraps of 1
    LoopCase("maxpool3x3s2", "maxpool", 7, 7, 4, kernel=3, stride=2, padding=1, seed=35),
    LoopCase("maxpool2x2s2", "maxpool", 6, 4, 3, kernel=2, stride=2, seed=36),
    LoopCase("add", "add", 5, 3, 6, seed=37),
    LoopCase("conv_overrun", "conv", 5, 5, 16, kernel=3, stride=2, cout=2, seed=38,
             overrun=True),
]


class LoopProgram(NamedTuple):
    """A memory image to run (see ``verif.device_job.Job``) and what it must produce."""
    image: np.ndarray
    prog_addr: int
    used_words: int
    read_ranges: list
    #: The expected result (``golden``), or None when the program faults.
    want: np.ndarray | None
    #: Index of the instruction that faults with SPAD_RANGE, or None.
    fault_index: int | None
    #: ``decode(reads) -> result`` from the bytes of ``read_ranges``.
    decode: object


def make_loop_program(case: LoopCase, cfg) -> LoopProgram:
    """Build ``case``'s program for ``cfg`` (``hw.params.AccelConfig``) from
    ``default_rng(case.seed)``; the expected result comes from ``sw.golden``."""
    from stamen.hw import isa
    from stamen.sw import golden
    from stamen.sw.asm import to_bytes

    R, C, B = cfg.rows, cfg.cols, cfg.mem_bus_bytes
    rng = np.random.default_rng(case.seed)
    k, s, p = case.kernel, case.stride, case.padding
    h, w, c = case.h, case.w, case.c
    chunks = -(-c // R)
    hp, wp = h + 2 * p, w + 2 * p
    oh, ow = golden.conv_out_size(h, k, s, p), golden.conv_out_size(w, k, s, p)
    m = oh * ow
    x = rng.integers(-128, 128, (1, h, w, c), dtype=np.int8)
    zp = int(rng.integers(-128, 128))
    x[rng.random(x.shape) < 0.2] = zp                              # some zero-gated operands

    def act_rows(img, fill):
        """Return ``img`` (1, h, w, c) padded by ``p`` as act rows: (chunk, y, x) -> R channels."""
        rows = np.full((chunks, hp, wp, R), fill, np.int8)
        for ch in range(chunks):
            part = img[0, :, :, ch * R:(ch + 1) * R]
            rows[ch, p:p + h, p:p + w, :part.shape[-1]] = part
        return rows.reshape(-1, R)

    # Per-channel ops (maxpool, add) map act channel r of a chunk to output column r; with
    # fewer columns than rows a chunk takes n_sub MATMULs, sub-tile j mapping channel j*sub + c
    # to column c.
    sub = min(R, C)
    n_sub = -(-R // sub)

    def identity(scale):
        """Return the n_sub weight tiles (n_sub * R rows of C) of the per-channel ops."""
        t = np.zeros((n_sub, R, C), np.int8)
        for j in range(n_sub):
            r = np.arange(j * sub, min(R, (j + 1) * sub))
            t[j, r, r - j * sub] = scale
        return t.reshape(-1, C)

    def per_channel(rows, n):
        """Return the (n, chunks * R) channels of ``rows``: (chunks * n_sub * n) rows of C."""
        part = rows.reshape(chunks, n_sub, n, C)[..., :sub]
        return part.transpose(2, 0, 1, 3).reshape(n, chunks * n_sub * sub)

    def loop(**f):
        return isa.encode(isa.Opcode.LOOP, **(isa.LOOP_RESET | f))

    def matmul(**f):
        return isa.encode(isa.Opcode.MATMUL, **({"wt_addr": 0, "accumulate": 0} | f))

    def dma(op, spad, rows, addr, spad_addr=0):
        return isa.encode(op, spad=spad, spad_addr=spad_addr, rows=rows, dram_addr=addr,
                          dram_stride=cfg.spad_row_words(spad.name.lower()))

    # device memory: data blobs from word 0x40 on, then the results, then the program
    blobs, cursor = {}, 0x40

    def place(arr_or_words):
        nonlocal cursor
        addr = cursor
        if isinstance(arr_or_words, np.ndarray):
            blobs[addr] = np.ascontiguousarray(arr_or_words).tobytes()
            words = -(-len(blobs[addr]) // B)
        else:
            words = arr_or_words
        cursor += words + 0x10
        return addr

    LOAD, STORE, ACT, WT = isa.Opcode.LOAD, isa.Opcode.STORE, isa.Spad.ACT, isa.Spad.WT
    fault_index = None
    if case.kind == "conv":
        wgt = rng.integers(-128, 128, (k, k, c, case.cout), dtype=np.int8)
        wgt[rng.random(wgt.shape) < 0.2] = 0
        nts = -(-case.cout // C)                                  # output tiles of C channels
        tiles = np.zeros((nts, chunks, k, k, R, C), np.int8)      # kt = (chunk, ky, kx)
        for nt in range(nts):
            for ch in range(chunks):
                part = wgt[:, :, ch * R:(ch + 1) * R, nt * C:(nt + 1) * C]
                tiles[nt, ch, :, :, :part.shape[2], :part.shape[3]] = part
        act, wt = act_rows(x, zp), tiles.reshape(-1, C)
        act_at, wt_at = place(act), place(wt)
        out_at = place(nts * m * cfg.spad_row_words("acc"))
        prog = [dma(LOAD, ACT, len(act), act_at), dma(LOAD, WT, len(wt), wt_at),
                loop(k_wrap0=k, k_wrap1=k, k_stride1=wp,
                     k_stride2=cfg.act_spad_depth if case.overrun else hp * wp,
                     m_wrap=ow, m_stride=s, m_stride1=s * wp)]
        prog += [matmul(act_addr=0, acc_addr=nt * m, m=m, k_tiles=chunks * k * k,
                        wt_addr=nt * chunks * k * k * R, act_stride=1, zp=zp)
                 for nt in range(nts)]
        prog += [dma(STORE, isa.Spad.ACC, nts * m, out_at), isa.encode(isa.Opcode.HALT)]
        if case.overrun:
            fault_index = 3
        want = golden.conv2d(x, wgt, zp, s, p).reshape(m, case.cout)
        reads = [(out_at, nts * m * cfg.spad_row_words("acc"))]

        def decode(got):
            acc = np.frombuffer(got[0].tobytes(), "<i4").reshape(nts, m, C)
            return acc.transpose(1, 0, 2).reshape(m, nts * C)[:, :case.cout]
    elif case.kind == "maxpool":
        act, wt = act_rows(x, -128), identity(1)
        act_at, wt_at = place(act), place(wt)
        out_at = place(chunks * n_sub * m * cfg.spad_row_words("acc"))
        prog = [dma(LOAD, ACT, len(act), act_at), dma(LOAD, WT, n_sub * R, wt_at),
                loop(k_wrap0=k, k_wrap1=0, k_stride1=wp, k_stride2=0, m_wrap=ow, m_stride=s,
                     m_stride1=s * wp)]
        prog += [matmul(act_addr=ch * hp * wp, acc_addr=(ch * n_sub + j) * m, m=m,
                        k_tiles=k * k, wt_addr=j * R, act_stride=1, zp=zp, acc_max=1,
                        wt_repeat=1) for ch in range(chunks) for j in range(n_sub)]
        prog += [dma(STORE, isa.Spad.ACC, chunks * n_sub * m, out_at),
                 isa.encode(isa.Opcode.HALT)]
        want = golden.maxpool2d(x, k, s, p).reshape(m, c).astype(np.int32) - zp
        reads = [(out_at, chunks * n_sub * m * cfg.spad_row_words("acc"))]

        def decode(got):
            return per_channel(np.frombuffer(got[0].tobytes(), "<i4"), m)[:, :c]
    elif case.kind == "add":
        x2 = rng.integers(-128, 128, x.shape, dtype=np.int8)
        scale = int(rng.choice([-3, -1, 2, 5]))
        mult, shift = int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(0, 3))
        zp_out, relu = int(rng.integers(-20, 20)), True
        npix = h * w
        act = np.concatenate([act_rows(x, zp), act_rows(x2, zp)])   # x chunks, then x2 chunks
        params = np.array([[0] * C, [mult] * C, [shift] * C], "<i4")
        act_at, wt_at, par_at = place(act), place(identity(scale)), place(params)
        out_at = place(chunks * n_sub * npix * cfg.spad_row_words("out"))
        prog = [dma(LOAD, ACT, len(act), act_at), dma(LOAD, WT, n_sub * R, wt_at),
                dma(LOAD, isa.Spad.PARAM, 3, par_at),
                loop(m_wrap=w, m_stride=1, m_stride1=w)]      # a 2-D pixel walk, all rows
        for ch in range(chunks):
            for j in range(n_sub):
                rows_at = (ch * n_sub + j) * npix
                prog += [matmul(act_addr=ch * npix, acc_addr=rows_at, m=npix, k_tiles=2,
                                wt_addr=j * R, act_stride=chunks * npix, zp=zp, wt_repeat=1),
                         isa.encode(isa.Opcode.REQUANT, acc_addr=rows_at, out_addr=rows_at,
                                    param_addr=0, rows=npix, zp_out=zp_out, relu=relu)]
        prog += [dma(STORE, isa.Spad.OUT, chunks * n_sub * npix, out_at),
                 isa.encode(isa.Opcode.HALT)]
        want = golden.add(x, x2, zp, zp, scale, scale, mult, shift, zp_out, relu).reshape(npix, c)
        reads = [(out_at, chunks * n_sub * npix * cfg.spad_row_words("out"))]

        def decode(got):
            return per_channel(np.frombuffer(got[0].tobytes(), np.int8), npix)[:, :c]
    else:
        raise ValueError(f"Loop case kind must be conv, maxpool or add, not {case.kind!r}")
    code = to_bytes(prog, cfg)
    prog_addr = place(len(code) // B)
    blobs[prog_addr] = code
    image = np.zeros(cfg.mem_bytes, np.uint8)
    for addr, blob in blobs.items():
        image[addr * B:addr * B + len(blob)] = np.frombuffer(blob, np.uint8)
    if case.overrun:
        want, reads = None, []
    return LoopProgram(image, prog_addr, cursor, reads, want, fault_index, decode)
