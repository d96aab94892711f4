"""Digest of every program the case tables compile: proof that a refactoring changed no program.

For every configuration of ``tests/configs.py`` and every case of ``tests/cases.py`` (as a raw
GEMM and as a quantized Linear layer) and ``tests/conv_cases.py``, the program is compiled and its
instruction words, layout metadata and constants are hashed (SHA-256). Run it before and after a
change and compare::

    python tests/program_digest.py --save /tmp/before.json     # on the old tree
    python tests/program_digest.py --compare /tmp/before.json  # on the new one: exit 1 on a change

A case that a configuration refuses (``CompileError``) is recorded as refused, with the message's
hash, so a change in what compiles shows up too.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys

import cases
import configs
import conv_cases
from stamen.sw.compiler.driver import compile_gemm, compile_linear, compile_model
from stamen.sw.errors import CompileError

__all__ = ["program_hash", "digests", "main"]


def program_hash(prog) -> str:
    """Return the SHA-256 of ``prog``'s words, metadata and constants."""
    h = hashlib.sha256()
    h.update(json.dumps([int(w) for w in prog.words]).encode())
    h.update(json.dumps(prog.layout, sort_keys=True).encode())
    h.update(prog.constants.tobytes())
    return h.hexdigest()


def _programs(cfg):
    for case in cases.CASES:
        x, w, zp = cases.make_gemm(case)
        yield f"gemm {case}", lambda: compile_gemm(w, cfg, case.m, zp=zp)
        p = cases.make_linear(case)
        yield f"linear {case}", lambda: compile_linear(p["w"], p["bias"], p["mult"], p["shift"],
                                                        p["zp_in"], p["zp_out"], p["relu"], cfg,
                                                        case.m)
    for case in conv_cases.CONV_CASES:
        graph, _ = conv_cases.make_case(case)
        yield f"conv {case}", lambda: compile_model(graph, cfg, batch=case.batch)


def digests(log=None) -> dict[str, str]:
    """Return ``{"<config> <case>": digest or "refused <hash>"}`` over every table."""
    out = {}
    for name in configs.ISASIM_CONFIGS:
        cfg = configs.config(name)
        for label, build in _programs(cfg):
            try:
                out[f"{name} {label}"] = program_hash(build())
            except CompileError as e:
                out[f"{name} {label}"] = "refused " + hashlib.sha256(str(e).encode()).hexdigest()
        if log:
            log(f"{name}: {sum(k.startswith(name + ' ') for k in out)} programs")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", metavar="FILE", help="write the digests (JSON) to FILE")
    g.add_argument("--compare", metavar="FILE", help="compare with FILE; exit 1 on a difference")
    args = ap.parse_args(argv)
    now = digests(log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.save:
        with open(args.save, "w") as f:
            json.dump(now, f, indent=1, sort_keys=True)
        print(f"{len(now)} programs saved to {args.save}")
        return 0
    with open(args.compare) as f:
        before = json.load(f)
    changed = sorted(k for k in before.keys() & now.keys() if before[k] != now[k])
    only = sorted(before.keys() ^ now.keys())
    for k in changed:
        print(f"changed: {k}")
    for k in only:
        print(f"in one run only: {k}")
    print(f"{len(now)} programs: {len(changed)} changed, {len(only)} in one run only")
    return int(bool(changed or only))


if __name__ == "__main__":
    sys.exit(main())
