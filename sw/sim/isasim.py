"""ISA simulator: runs a Stamen program on a NumPy model of device memory and the five scratchpads.

Semantics are exactly those of ``hw/isa.py``, numerics those of ``sw/golden.py``; each instruction
runs as a whole with vectorised NumPy, in memory bounded by the device's own state (a MATMUL a
chunk of tiles at a time). ``cycles`` and the other counters equal the RTL's for an ideal memory:
the instruction figures come from ``sim/cycles.py`` and each MATMUL's from its engine model
(``sim/engines.py``). A fault raises :class:`~stamen.sw.errors.DeviceError` with the faulting
``pc`` and the counters at the fault. docs/internals.md ("ISA simulator") gives the fault order,
the cycle model and the MAC counters.
"""
from __future__ import annotations

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.hw.timing import RETIRE_CYCLES

from .. import golden
from ..asm import fields
from ..errors import DeviceError
from ..faults import bad_arg_reason
from ..zero_dir import read_zero_dir, write_zero_dir, zero_dir_runs
from .cycles import (fetch_cycles, load_cycles, misc_cycles, perf_cycles, requant_cycles,
                     requant_fault_cycles, store_cycles, zero_dir_cycles)
from .engines import engine_model
from .matmul import act_chunks, act_rows, act_tiles

__all__ = ["IsaSim"]

_SPAD_NAMES = ("act", "wt", "acc", "out", "param")
_SPAD_DTYPES = {"act": np.int8, "wt": np.int8, "acc": np.dtype("<i4"), "out": np.int8,
                "param": np.dtype("<i4")}


class IsaSim:
    """Instruction-set simulator of one device configuration.

    Parameters
    ----------
    cfg : AccelConfig
        The configuration; scratchpad sizes, array size and memory size come from it.

    Scratchpads persist across :meth:`run` calls (as on the device, which does not clear them) and
    are available as ``spads[name]`` (``"act"``: ``(depth, R)`` int8, ``"wt"``/``"out"``:
    ``(depth, C)`` int8, ``"acc"``/``"param"``: ``(depth, C)`` int32).
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"IsaSim config must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.spads = {}
        for name in _SPAD_NAMES:
            width = cfg.spad_row_bytes(name) // np.dtype(_SPAD_DTYPES[name]).itemsize
            self.spads[name] = np.zeros((cfg.spad_depth(name), width), _SPAD_DTYPES[name])
        self._decoded: dict[int, tuple] = {}
        self.loop = dict(isa.LOOP_RESET)
        self.engine = engine_model(cfg)

    # -- decode ---------------------------------------------------------------------------------
    def _decode(self, word: int, pc: int):
        try:
            return self._decoded[word]
        except KeyError:
            pass
        if isa.opcode_bits(word) not in {o.value for o in isa.Opcode}:
            raise DeviceError(isa.ErrorCode.ILLEGAL_OPCODE, pc=pc,
                              detail=f"opcode {isa.opcode_bits(word)} in {word:#x}")
        reason = bad_arg_reason(self.cfg, word)        # step 3 of the fault order
        if reason is not None:
            raise DeviceError(isa.ErrorCode.BAD_ARG, pc=pc, detail=reason)
        d = fields(word)
        self._decoded[word] = d
        return d

    # -- run ------------------------------------------------------------------------------------
    def run(self, mem: np.ndarray, prog_addr: int, max_instructions: int = 10 ** 7) -> dict:
        """Execute the program at word address ``prog_addr`` in place on ``mem`` until HALT.

        Parameters
        ----------
        mem : uint8 array of ``cfg.mem_bytes``
            The device memory image; modified in place.
        prog_addr : int
            Word address of the first instruction.
        max_instructions : int
            Raise :class:`TimeoutError` when this many instructions retired without HALT.

        Returns
        -------
        dict
            The final counters, keyed by :data:`hw.isa.PERF_COUNTERS`.

        Raises
        ------
        DeviceError
            On a fault (see the module docstring); ``.counters`` holds the counters at the fault.
        """
        cfg = self.cfg
        if not isinstance(mem, np.ndarray) or mem.dtype != np.uint8 or mem.ndim != 1:
            raise TypeError(f"Device memory must be a 1-D uint8 array, not {type(mem).__name__} "
                            f"{getattr(mem, 'dtype', None)}")
        if mem.size != cfg.mem_bytes:
            raise ValueError(f"Device memory must be {cfg.mem_bytes} bytes, not {mem.size}")
        bb = cfg.mem_bus_bytes
        iw = isa.instr_words(cfg)
        ibytes = isa.INSTR_BITS // 8
        ctr = dict.fromkeys(isa.PERF_COUNTERS, 0)
        self.counters = ctr
        pc = int(prog_addr)
        fetch = fetch_cycles(cfg)
        self.loop = dict(isa.LOOP_RESET)                # start resets the address generator
        try:
            while True:
                if ctr["instructions"] >= max_instructions:
                    raise TimeoutError(f"Program did not HALT within {max_instructions} "
                                       f"instructions (pc={pc:#x})")
                if pc < 0 or pc + iw > cfg.mem_words:
                    raise DeviceError(isa.ErrorCode.FETCH_RANGE, pc=pc,
                                      detail=f"fetch of words {pc:#x}..{pc + iw - 1:#x} beyond "
                                             f"memory of {cfg.mem_words} words")
                word = int.from_bytes(mem[pc * bb: pc * bb + ibytes].tobytes(), "little")
                ctr["cycles"] += fetch
                op, a = self._decode(word, pc)
                if op == isa.Opcode.HALT:
                    ctr["cycles"] += misc_cycles(cfg)
                    ctr["instructions"] += 1
                    break
                self._execute(op, a, mem, pc, ctr)
                ctr["instructions"] += 1
                pc += iw
        except DeviceError as e:
            e.counters = dict(ctr)
            raise
        return dict(ctr)

    # -- checks ---------------------------------------------------------------------------------
    def _spad_check(self, pc, spad, addr, rows):
        depth = self.cfg.spad_depth(spad)
        if addr + rows > depth:
            raise DeviceError(isa.ErrorCode.SPAD_RANGE, pc=pc,
                              detail=f"{spad} rows {addr}..{addr + rows - 1} beyond depth {depth}")

    def _dram_check(self, pc, first, last):
        limit = self.cfg.zero_dir_base                  # mem_words without compress_acts
        if last >= limit:
            raise DeviceError(isa.ErrorCode.DRAM_RANGE, pc=pc,
                              detail=f"memory words {first:#x}..{last:#x} beyond "
                                     f"{limit} words" + (" (the zero-row directory)"
                                                         if self.cfg.compress_acts else ""))

    # -- execute --------------------------------------------------------------------------------
    def _execute(self, op, a, mem, pc, ctr):
        cfg = self.cfg
        if op == isa.Opcode.LOAD or op == isa.Opcode.STORE:
            self._dma(op == isa.Opcode.STORE, a, mem, pc, ctr)
        elif op == isa.Opcode.MATMUL:
            self._matmul(a, pc, ctr)
        elif op == isa.Opcode.REQUANT:
            self._requant(a, pc, ctr)
        elif op == isa.Opcode.PERF:
            pw = isa.perf_words(cfg)
            self._dram_check(pc, a["dram_addr"], a["dram_addr"] + pw - 1)
            mask = (1 << cfg.counter_bits) - 1         # the counters wrap at counter_bits
            snap = b"".join((ctr[n] & mask).to_bytes(isa.PERF_SLOT_BYTES, "little")
                            for n in isa.PERF_COUNTERS).ljust(pw * cfg.mem_bus_bytes, b"\0")
            start = a["dram_addr"] * cfg.mem_bus_bytes
            mem[start:start + len(snap)] = np.frombuffer(snap, np.uint8)
            ctr["cycles"] += perf_cycles(cfg)           # the retire cycle, after the snapshot
        elif op == isa.Opcode.LOOP:
            self.loop = dict(a)
            ctr["cycles"] += misc_cycles(cfg)
        elif op == isa.Opcode.SYNC:
            ctr["cycles"] += misc_cycles(cfg)
        else:   # pragma: no cover - every legal opcode is handled above
            raise DeviceError(isa.ErrorCode.ILLEGAL_OPCODE, pc=pc, detail=f"opcode {op}")

    def _dma(self, store, a, mem, pc, ctr):
        cfg = self.cfg
        spad = _SPAD_NAMES[a["spad"]]
        rows, saddr, daddr, stride = a["rows"], a["spad_addr"], a["dram_addr"], a["dram_stride"]
        compress = a.get("compress", 0)
        self._spad_check(pc, spad, saddr, rows)
        rw = cfg.spad_row_words(spad)
        last = daddr + (rows - 1) * stride + rw - 1
        self._dram_check(pc, daddr, last)
        if compress:
            self._zero_dir_dma(store, spad, saddr, rows, daddr, stride, a["zp"], mem, ctr)
            return
        bb = cfg.mem_bus_bytes
        rb = rw * bb
        arr = self.spads[spad]
        if stride == rw:                        # contiguous: one slice
            region = mem[daddr * bb: daddr * bb + rows * rb]
            if store:
                region[:] = arr[saddr:saddr + rows].view(np.uint8).reshape(-1)
            else:
                arr[saddr:saddr + rows] = region.view(arr.dtype).reshape(rows, -1)
        else:
            idx = ((daddr + np.arange(rows, dtype=np.int64) * stride) * bb)[:, None] \
                + np.arange(rb, dtype=np.int64)[None, :]
            if store:
                src = arr[saddr:saddr + rows].view(np.uint8).reshape(rows, rb)
                if stride >= rw:
                    mem[idx] = src
                else:                           # overlapping rows: later rows win, in order
                    for i in range(rows):
                        mem[idx[i]] = src[i]
            else:
                arr[saddr:saddr + rows] = mem[idx].reshape(-1).view(arr.dtype).reshape(rows, -1)
        nbytes = rows * rb
        ctr["dram_write_bytes" if store else "dram_read_bytes"] += nbytes
        ctr["cycles"] += (store_cycles if store else load_cycles)(cfg, spad, rows)

    def _zero_dir_dma(self, store, spad, saddr, rows, daddr, stride, zp, mem, ctr):
        """Execute a LOAD / STORE with ``compress=1`` (``hw/isa.py``), checked already."""
        cfg = self.cfg
        bb, rw = cfg.mem_bus_bytes, cfg.zero_row_words
        rb = rw * bb
        arr = self.spads[spad]
        addrs = daddr + np.arange(rows, dtype=np.int64) * stride
        slots = addrs // rw
        idx = (addrs * bb)[:, None] + np.arange(rb, dtype=np.int64)[None, :]
        if store:
            src = arr[saddr:saddr + rows]
            zero = (src == zp).all(axis=1)
            data = src.view(np.uint8).reshape(rows, rb)
            written, last = np.flatnonzero(~zero), np.arange(rows)
            if stride == 0:             # one slot: the last row written and the last row's bit
                written, last = written[-1:], last[-1:]
            mem[idx[written]] = data[written]
            write_zero_dir(cfg, mem, slots[last], zero[last])
            n_zero = int(zero.sum())
        else:
            zero = read_zero_dir(cfg, mem, slots)
            loaded = mem[idx].view(np.int8).copy()
            loaded[zero] = zp
            arr[saddr:saddr + rows] = loaded
            n_zero = int(zero.sum())
        d = zero_dir_runs(cfg, daddr, rows, stride)
        data_bytes = (rows - n_zero) * rb
        if store:
            ctr["dram_write_bytes"] += data_bytes + d * bb
            ctr["dram_read_bytes"] += d * bb
        else:
            ctr["dram_read_bytes"] += data_bytes + d * bb
        ctr["cycles"] += zero_dir_cycles(cfg, store, rows, n_zero, d)

    def act_rows(self, a) -> np.ndarray:
        """Return the ``(k_tiles, m)`` act-spad rows a MATMUL with operands ``a`` reads under the
        current LOOP state (:func:`act_rows`)."""
        return act_rows(a, self.loop)

    def _matmul(self, a, pc, ctr):
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        m, kt = a["m"], a["k_tiles"]
        wt_rows = R if a["wt_repeat"] else kt * R
        self._spad_check(pc, "wt", a["wt_addr"], wt_rows)
        self._spad_check(pc, "acc", a["acc_addr"], m)
        timing = self.engine.timing(cfg, a, self.loop, self.spads["act"])
        cyc, skip_rows = timing.cycles, timing.skipped_rows
        tile, offs = act_tiles(a, self.loop)
        act_last = int(tile.max() + offs.max())
        if act_last >= cfg.act_spad_depth:             # found as the rows are read: at the end
            ctr["cycles"] += cyc
            ctr["compute_cycles"] += cyc - RETIRE_CYCLES
            skip_macs = skip_rows * R * C
            ctr["macs"] += m * R * C * kt - skip_macs
            ctr["skipped_macs"] += skip_macs
            raise DeviceError(isa.ErrorCode.SPAD_RANGE, pc=pc,
                              detail=f"act row {act_last} beyond depth {cfg.act_spad_depth}")
        self._matmul_results(a, ctr, skip_rows)
        ctr["cycles"] += cyc
        ctr["compute_cycles"] += cyc - RETIRE_CYCLES       # the MatmulEngine's busy cycles

    def _matmul_results(self, a, ctr, skip_rows):
        """Write a legal MATMUL's ACC rows and add its MACs to ``macs``, ``gated_macs`` and
        ``skipped_macs`` (module docstring, "MAC counters"; ``skip_rows``: the act rows a
        zero-skipping ``ws`` engine skips), a chunk of tiles at a time (:func:`_chunks`), so
        the memory is that of a chunk whatever ``k_tiles``. With ``wt_repeat`` every tile
        meets the same weights, so each distinct act tile is read once and weighted by the
        number of tiles that read it (at most the ACT depth of them)."""
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        m, zp = a["m"], a["zp"]
        act, wt = self.spads["act"], self.spads["wt"]
        repeat, acc_max = a["wt_repeat"], a["acc_max"]
        tile, offs = act_tiles(a, self.loop)
        if repeat:
            w_tile = wt[a["wt_addr"]:a["wt_addr"] + R].astype(np.int64)
            tile, inv, counts = np.unique(tile, return_inverse=True, return_counts=True)
            a_sum = np.zeros((m, R), np.int64)          # sum over the tiles of a - zp
        out = None if acc_max else np.zeros((m, C), np.int64)
        zeros = np.zeros(len(tile), np.int64)           # zero activations per (distinct) tile
        gated_w = 0                                     # non-zero acts meeting a zero weight
        for c0, c1, rows in act_chunks(tile, offs, max(R, C)):
            raw = act[rows]                                                  # (ck, m, R)
            za = raw == zp
            zeros[c0:c1] = za.sum(axis=(1, 2))
            acts = raw.astype(np.int64) - zp
            if repeat:
                wts = w_tile                                                 # (R, C)
            else:
                wts = wt[a["wt_addr"] + c0 * R:a["wt_addr"] + c1 * R].astype(np.int64)
            if cfg.zero_gate and self.engine.GATES_ZERO_WEIGHTS:
                zw = (wts == 0).reshape(-1, R, C).sum(axis=2)                # (1 or ck, R)
                per_tile = ((m - za.sum(axis=1)) * zw).sum(axis=1)
                gated_w += int((per_tile * counts[c0:c1]).sum() if repeat else per_tile.sum())
            if acc_max:
                # float64 is exact: |a @ W| <= 255 * 128 * R < 2**53.
                per = (acts.astype(np.float64)
                       @ wts.reshape(-1, R, C).astype(np.float64)).max(axis=0)
                out = per if out is None else np.maximum(out, per)
            elif repeat:
                a_sum += np.tensordot(counts[c0:c1], acts, axes=1)
            else:
                # float64 is exact for a chunk: |sum| <= 255 * 128 * R * chunk tiles < 2**53.
                a2 = acts.transpose(1, 0, 2).reshape(m, -1).astype(np.float64)
                out += (a2 @ wts.astype(np.float64)).astype(np.int64)
        if acc_max:
            out = out.astype(np.int64)
        elif repeat:
            out = a_sum @ w_tile                # exact: |a_sum| <= 255 * 65535, int64
        if repeat:
            zeros = zeros[inv]
        acc = self.spads["acc"]
        lo, hi = a["acc_addr"], a["acc_addr"] + m
        if a["accumulate"]:
            out = np.maximum(out, acc[lo:hi]) if acc_max else out + acc[lo:hi]
        acc[lo:hi] = golden.wrap_int32(out)
        n = self.engine.count_macs(cfg, a, self.loop, zeros, gated_w, skip_rows)
        ctr["macs"] += n.macs
        ctr["gated_macs"] += n.gated
        ctr["skipped_macs"] += n.skipped

    def _requant(self, a, pc, ctr):
        cfg = self.cfg
        rows = a["rows"]
        self._spad_check(pc, "acc", a["acc_addr"], rows)
        self._spad_check(pc, "out", a["out_addr"], rows)
        self._spad_check(pc, "param", a["param_addr"], 3)
        p = self.spads["param"]
        bias, mult, shift = p[a["param_addr"]], p[a["param_addr"] + 1], p[a["param_addr"] + 2]
        if np.any(shift < 0) or np.any(shift > isa.REQUANT_MAX_SHIFT):
            ctr["cycles"] += requant_fault_cycles(cfg)     # the check runs on the PostProc
            raise DeviceError(isa.ErrorCode.BAD_PARAM, pc=pc,
                              detail=f"shift row {a['param_addr'] + 2} holds {shift.tolist()}, "
                                     f"outside 0..{isa.REQUANT_MAX_SHIFT}")
        acc = self.spads["acc"][a["acc_addr"]:a["acc_addr"] + rows]
        self.spads["out"][a["out_addr"]:a["out_addr"] + rows] = golden.requantize(
            acc, bias, mult, shift, a["zp_out"], bool(a["relu"]))
        ctr["cycles"] += requant_cycles(cfg, rows)
