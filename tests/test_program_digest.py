"""``tests/program_digest.py``, the refactoring guard: a program's digest is repeatable and
changes with any word, layout or constant."""
import numpy as np

import cases
from program_digest import program_hash
from stamen.hw.params import AccelConfig
from stamen.sw.compiler.driver import compile_gemm


def test_digest_is_repeatable_and_sensitive():
    cfg = AccelConfig.preset("tiny")
    x, w, zp = cases.make_gemm(cases.CASES[6])
    a, b = compile_gemm(w, cfg, 5, zp=zp), compile_gemm(w, cfg, 5, zp=zp)
    assert program_hash(a) == program_hash(b)
    w2 = w.copy()
    w2[0, 0] ^= 1                                           # one constant byte
    assert program_hash(compile_gemm(w2, cfg, 5, zp=zp)) != program_hash(a)
    assert program_hash(compile_gemm(w, cfg, 6, zp=zp)) != program_hash(a)     # words, layout
    assert program_hash(compile_gemm(w, cfg, 5, zp=(zp + 1) % 128)) != program_hash(a)
    assert np.array_equal(a.constants, b.constants) and a.constants is not a.constants
