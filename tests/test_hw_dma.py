# amaranth: UnusedElaboratable=no
"""DMA LOAD / STORE of 2-D strided blocks, against a memory model with latency and backpressure."""
from collections import deque

import numpy as np
import pytest
from amaranth import *
from amaranth.lib import memory

from stamen.hw import bus, isa, timing
from stamen.hw.dma import DMA
from stamen.hw.params import AccelConfig
from stamen.sw import asm
from stamen.sw.sim import cycles, isasim
from stamen.verif import amsim

CONFIGS = {
    "b2": AccelConfig(rows=2, cols=4, bus_bytes=2, act_spad_depth=32, wt_spad_depth=32,
                      acc_spad_depth=32, out_spad_depth=32, param_spad_depth=16, mem_bytes=2 * 512),
    "b4": AccelConfig(rows=4, cols=8, bus_bytes=4, act_spad_depth=32, wt_spad_depth=32,
                      acc_spad_depth=32, out_spad_depth=32, param_spad_depth=16, mem_bytes=4 * 512),
}


class Harness(Elaboratable):
    """The DMA with all five scratchpads."""

    def __init__(self, cfg):
        self.dma = DMA(cfg)
        self.data = {s: memory.MemoryData(shape=bus.spad_row_layout(cfg, s),
                                          depth=cfg.spad_depth(s), init=[]) for s in bus.SPADS}

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = self.dma
        for s in bus.SPADS:
            m.submodules[s] = mem = memory.Memory(data=self.data[s])
            rp, wp = mem.read_port(), mem.write_port()
            rd, wr = getattr(dma, f"{s}_rd"), getattr(dma, f"{s}_wr")
            m.d.comb += [rp.addr.eq(rd.addr), rp.en.eq(rd.en), rd.data.eq(rp.data),
                         wp.addr.eq(wr.addr), wp.data.eq(wr.data), wp.en.eq(wr.en)]
        return m


def memory_model(dut, mem, rng, latency, p_stall, stats):
    """Return a background testbench serving ``dut``'s bus from the NumPy word array ``mem``."""
    req, rsp = dut.o_mem_req, dut.i_mem_rsp

    async def model(ctx):
        pending = deque()           # (cycle the response is due, data)
        cycle = 0
        while True:
            ctx.set(req.ready, int(rng.random() >= p_stall))
            if pending and pending[0][0] <= cycle and rng.random() >= p_stall:
                ctx.set(rsp.valid, 1)
                ctx.set(rsp.payload.rdata, pending[0][1])
            else:
                ctx.set(rsp.valid, 0)
            if ctx.get(rsp.valid) and ctx.get(rsp.ready):
                pending.popleft()
            if ctx.get(req.valid) and ctx.get(req.ready):
                addr = ctx.get(req.payload.addr)
                if ctx.get(req.payload.we):
                    mem[addr] = ctx.get(req.payload.wdata)
                    stats["writes"] += 1
                else:
                    pending.append((cycle + 1 + int(rng.integers(0, latency + 1)), int(mem[addr])))
                    stats["reads"] += 1
            await ctx.tick()
            cycle += 1
    return model


def row_to_words(cfg, spad, row):
    """Return the memory words of one spad row given as a list of element values."""
    elem = cfg.spad_row_bytes(spad) // len(row)
    raw = b"".join(int(v).to_bytes(elem, "little", signed=True) for v in row)
    b = cfg.mem_bus_bytes
    return [int.from_bytes(raw[j:j + b], "little") for j in range(0, len(raw), b)]


def random_row(cfg, spad, rng):
    n = bus.spad_row_layout(cfg, spad).length
    bits = 8 * cfg.spad_row_bytes(spad) // n
    return [int(v) for v in rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), n)]


def random_block(cfg, spad, rng, max_rows=6):
    """Return DMA args for a random in-range 2-D block of ``spad``."""
    words = cfg.spad_row_words(spad)
    rows = int(rng.integers(1, max_rows + 1))
    stride = int(rng.integers(0, 3)) * words + int(rng.integers(0, 3)) if rng.random() < 0.8 \
        else int(rng.integers(words, 4 * words))
    span = (rows - 1) * stride + words
    return {"spad": isa.Spad(bus.SPADS.index(spad)),
            "spad_addr": int(rng.integers(0, cfg.spad_depth(spad) - rows + 1)),
            "rows": rows,
            "dram_addr": int(rng.integers(0, cfg.mem_words - span + 1)),
            "dram_stride": stride}


async def run_cmd(ctx, dut, store, args, timeout=2000):
    await amsim.put(ctx, dut.i_cmd, {"store": store, "args": args}, timeout=5)
    return await amsim.wait_until(ctx, dut.busy, timeout=timeout, value=0)


@pytest.mark.parametrize("latency,p_stall", [(0, 0.0), (6, 0.3), (20, 0.6)])
@pytest.mark.parametrize("cfg_name", CONFIGS)
def test_load_store_blocks(cfg_name, latency, p_stall):
    seed = hash((cfg_name, latency, p_stall)) % 1000
    rng = np.random.default_rng(seed)
    cfg = CONFIGS[cfg_name]
    h = Harness(cfg)
    mem = rng.integers(0, 1 << cfg.mem_bus_bits, cfg.mem_words, dtype=np.uint64)
    mem = [int(v) for v in mem]
    stats = {"reads": 0, "writes": 0}
    spads = list(bus.SPADS) * 2
    rng.shuffle(spads)

    async def testbench(ctx):
        for spad in spads:
            msg = f"seed={seed} cfg={cfg} spad={spad}"
            # LOAD a random block; check spad rows against memory.
            args = random_block(cfg, spad, rng)
            before = dict(stats)
            await run_cmd(ctx, h.dma, 0, args)
            words = cfg.spad_row_words(spad)
            for i in range(args["rows"]):
                row = ctx.get(h.data[spad][args["spad_addr"] + i])
                got = row_to_words(cfg, spad, [row[j] for j in range(len(row))])
                base = args["dram_addr"] + i * args["dram_stride"]
                np.testing.assert_array_equal(got, mem[base:base + words],
                                              err_msg=f"{msg} LOAD {args} row {i}")
            assert stats["reads"] - before["reads"] == args["rows"] * words, msg
            # STORE random spad contents to another random block; check memory.
            args = random_block(cfg, spad, rng)
            rows = [random_row(cfg, spad, rng) for _ in range(args["rows"])]
            for i, row in enumerate(rows):
                ctx.set(h.data[spad][args["spad_addr"] + i], row)
            expected = list(mem)
            for i, row in enumerate(rows):
                base = args["dram_addr"] + i * args["dram_stride"]
                expected[base:base + words] = row_to_words(cfg, spad, row)
            before = dict(stats)
            await run_cmd(ctx, h.dma, 1, args)
            np.testing.assert_array_equal(mem, expected, err_msg=f"{msg} STORE {args}")
            assert stats["writes"] - before["writes"] == args["rows"] * words, msg

    amsim.run(h, testbench,
              background=[memory_model(h.dma, mem, rng, latency, p_stall, stats)])


def test_load_throughput():
    """Without latency or stalls, LOAD and STORE move one word per cycle, for every spad
    (the cycle counts of sw.sim.cycles.load_cycles / store_cycles)."""
    cfg = CONFIGS["b2"]
    h = Harness(cfg)
    rng = np.random.default_rng(0)
    mem = [int(v) for v in rng.integers(0, 1 << cfg.mem_bus_bits, cfg.mem_words)]
    stats = {"reads": 0, "writes": 0}
    result = {}

    async def testbench(ctx):
        for spad in bus.SPADS:
            args = {"spad": isa.Spad(bus.SPADS.index(spad)), "spad_addr": 0, "rows": 16,
                    "dram_addr": 0, "dram_stride": cfg.spad_row_words(spad)}
            result[spad, 0] = await run_cmd(ctx, h.dma, 0, args)
            result[spad, 1] = await run_cmd(ctx, h.dma, 1, args)

    amsim.run(h, testbench, background=[memory_model(h.dma, mem, rng, 0, 0.0, stats)])
    for spad in bus.SPADS:
        words = 16 * cfg.spad_row_words(spad)
        assert result[spad, 0] == words + timing.DMA_READ_LATENCY, (spad, result)   # LOAD: busy
        assert result[spad, 1] == words + timing.DMA_WRITE_LATENCY, (spad, result)  # STORE


# -- zero-row directory (compress=1) --------------------------------------------------------------
ZCONFIGS = {
    # 1 word per row, 32 row slots per directory word.
    "z4": AccelConfig(rows=4, cols=4, bus_bytes=4, act_spad_depth=32, wt_spad_depth=32,
                      acc_spad_depth=32, out_spad_depth=32, param_spad_depth=16, mem_bytes=4 * 512,
                      compress_acts=True),
    # 2 words per row, 16 row slots (32 words) per directory word.
    "z2": AccelConfig(rows=4, cols=4, bus_bytes=2, act_spad_depth=32, wt_spad_depth=32,
                      acc_spad_depth=32, out_spad_depth=32, param_spad_depth=16, mem_bytes=2 * 512,
                      compress_acts=True),
}
#: Words kept for the two-instruction program isasim runs (just below the directory).
_PROG_WORDS = 16


def _bytes_of(cfg, words):
    return np.frombuffer(b"".join(int(w).to_bytes(cfg.mem_bus_bytes, "little") for w in words),
                         np.uint8).copy()


def _words_of(cfg, image):
    b = cfg.mem_bus_bytes
    return [int.from_bytes(image[i:i + b].tobytes(), "little") for i in range(0, image.size, b)]


def isasim_dma(cfg, sim, image, store, args):
    """Run ``args`` as one LOAD / STORE (then HALT) on ``sim`` with the byte image ``image``;
    return the DMA's busy cycles (without fetch and retire) and the counters."""
    prog_addr = cfg.zero_dir_base - _PROG_WORDS
    op = isa.Opcode.STORE if store else isa.Opcode.LOAD
    words = [isa.encode(op, **args), isa.encode(isa.Opcode.HALT)]
    code = np.frombuffer(asm.to_bytes(words, cfg), np.uint8)
    bb = cfg.mem_bus_bytes
    image[prog_addr * bb:prog_addr * bb + code.size] = code
    ctr = sim.run(image, prog_addr)
    busy = ctr["cycles"] - 2 * cycles.fetch_cycles(cfg) - timing.RETIRE_CYCLES
    return busy, ctr


def zero_block(cfg, rng, stride_rows):
    """Return DMA args (without spad) for a random aligned block below the program words."""
    rw = cfg.zero_row_words
    rows = int(rng.integers(1, 25))
    stride = stride_rows * rw
    span = (rows - 1) * stride + rw
    top = cfg.zero_dir_base - _PROG_WORDS
    return {"spad_addr": int(rng.integers(0, 32 - rows + 1)), "rows": rows,
            "dram_addr": int(rng.integers(0, (top - span) // rw + 1)) * rw,
            "dram_stride": stride}


def _set_dir_bits(cfg, mem, rng, share):
    """Set a random ``share`` of the directory bits of ``mem`` (a list of words)."""
    n = cfg.zero_dir_words * cfg.mem_bus_bits
    bits = rng.random(n) < share
    for w in range(cfg.zero_dir_words):
        chunk = bits[w * cfg.mem_bus_bits:(w + 1) * cfg.mem_bus_bits]
        mem[cfg.zero_dir_base + w] = int(sum(1 << i for i, b in enumerate(chunk) if b))


def _spad_rows(ctx, h, spad, first, n):
    return [[int(v) for v in ctx.get(h.data[spad][first + i])] for i in range(n)]


@pytest.mark.parametrize("latency,p_stall", [(0, 0.0), (6, 0.3), (20, 0.6)])
@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("cfg_name", ZCONFIGS)
def test_zero_dir_matches_isasim(cfg_name, share, latency, p_stall):
    """Compressed STORE, LOAD and round trips with a ``share`` of all-zp rows, against
    sw.sim.isasim: memory image (data and directory words), spad rows, words moved, and with an
    ideal memory the busy cycles; uncompressed transfers in between."""
    seed = 1000 + 100 * list(ZCONFIGS).index(cfg_name) + int(10 * share) + latency
    rng = np.random.default_rng(seed)
    cfg = ZCONFIGS[cfg_name]
    h = Harness(cfg)
    sim = isasim.IsaSim(cfg)
    mem = [int(v) for v in rng.integers(0, 1 << cfg.mem_bus_bits, cfg.mem_words, dtype=np.uint64)]
    _set_dir_bits(cfg, mem, rng, share)
    stats = {"reads": 0, "writes": 0}
    ideal = latency == 0 and p_stall == 0.0
    bb = cfg.mem_bus_bytes

    async def check(ctx, store, args, msg):
        image = _bytes_of(cfg, mem)
        busy, ctr = isasim_dma(cfg, sim, image, store, args)
        before = dict(stats)
        got_busy = await run_cmd(ctx, h.dma, int(store), args, timeout=20000)
        prog = slice(cfg.zero_dir_base - _PROG_WORDS, cfg.zero_dir_base)
        expected = _words_of(cfg, image)
        expected[prog] = mem[prog]                      # the program isasim ran from
        np.testing.assert_array_equal(mem, expected, err_msg=f"{msg} memory")
        for s in ("act", "out"):
            got = _spad_rows(ctx, h, s, 0, cfg.spad_depth(s))
            np.testing.assert_array_equal(got, sim.spads[s], err_msg=f"{msg} {s} spad")
        assert (stats["reads"] - before["reads"]) * bb == ctr["dram_read_bytes"], msg
        assert (stats["writes"] - before["writes"]) * bb == ctr["dram_write_bytes"], msg
        if ideal:
            assert got_busy == busy, f"{msg}: busy {got_busy} cycles, isasim {busy}"

    async def testbench(ctx):
        for s in ("act", "out"):                        # both models start from the same spads
            for i in range(cfg.spad_depth(s)):
                ctx.set(h.data[s][i], [int(v) for v in sim.spads[s][i]])
        for it in range(8):
            stride_rows = [1, 1, 2, 3, 0, 5, 1, 2][it]
            zp = int(rng.integers(-128, 128))
            msg = f"seed={seed} cfg={cfg_name} share={share} it={it}"
            # STORE compressed: OUT rows with a share of all-zp rows.
            args = {"spad": isa.Spad.OUT, **zero_block(cfg, rng, stride_rows),
                    "compress": 1, "zp": zp}
            for i in range(args["rows"]):
                row = [zp] * cfg.cols if rng.random() < share else random_row(cfg, "out", rng)
                sim.spads["out"][args["spad_addr"] + i] = row
                ctx.set(h.data["out"][args["spad_addr"] + i], row)
            await check(ctx, True, args, f"{msg} STORE {args}")
            # LOAD it back compressed: the round trip.
            load = {**args, "spad": isa.Spad.ACT,
                    "spad_addr": int(rng.integers(0, 32 - args["rows"] + 1))}
            await check(ctx, False, load, f"{msg} LOAD back {load}")
            last = {}
            for i in range(args["rows"]):             # later rows win in a slot (stride 0)
                last[args["dram_addr"] + i * args["dram_stride"]] = i
            for i in range(args["rows"]):
                src = last[args["dram_addr"] + i * args["dram_stride"]]
                np.testing.assert_array_equal(sim.spads["act"][load["spad_addr"] + i],
                                              sim.spads["out"][args["spad_addr"] + src],
                                              err_msg=f"{msg} round trip row {i}")
            # LOAD compressed from a random block (random directory bits, stale data words).
            args = {"spad": isa.Spad.ACT, **zero_block(cfg, rng, stride_rows),
                    "compress": 1, "zp": zp}
            await check(ctx, False, args, f"{msg} LOAD {args}")
            # An uncompressed LOAD / STORE in between runs as before.
            args = {"spad": isa.Spad.OUT, **zero_block(cfg, rng, stride_rows)}
            await check(ctx, it % 2 == 0, args, f"{msg} plain {args}")

    amsim.run(h, testbench,
              background=[memory_model(h.dma, mem, rng, latency, p_stall, stats)])
