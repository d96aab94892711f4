# Stamen: every target creates .venv (pip only) on first use.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMEN  := $(VENV)/bin/stamen
PRESET  ?= small
BACKEND ?= verilator

BOARD   ?= icebreaker

.PHONY: venv demo test sim unit bench verilog bitstream fuzz clean help

help:
	@echo "make venv     create .venv with everything (pip only, about a minute)"
	@echo "make demo     digits MLP and LeNet-style CNN: train, quantize, compile, run on the Verilator device"
	@echo "              (MODELS=\"mlp lenet resnet\" picks the networks)"
	@echo "make test     the full regression (unit, compiler/isasim, Verilator/cocotb)"
	@echo "make sim      the Verilator/cocotb regression alone"
	@echo "make fuzz     N random graphs (golden vs isasim) on random configs and N random programs per"
	@echo "              config (isasim must halt or fault by name): make fuzz N=1000 SEED=7; replay"
	@echo "              one: tests/graph_fuzz.py --replay SEED, tests/isa_fuzz.py --preset P --replay SEED"
	@echo "make bench    GEMM and CNN conv-layer benchmarks vs SCALE-Sim (CSV/JSON/PNG under build/bench/)"
	@echo "make verilog  write build/$(PRESET)/ (Verilog + config.json)"
	@echo "make bitstream BOARD=icebreaker|ulx3s   FPGA bitstream with open tools (YoWASP)"

$(VENV)/.stamp: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e .
	touch $@

venv: $(VENV)/.stamp

MODELS  ?= mlp lenet

demo: venv
	@for model in $(MODELS); do \
		$(STAMEN) demo --model $$model --preset $(PRESET) --backend $(BACKEND) || exit 1; \
	done

test: venv
	$(VPY) -m pytest -q -n auto

unit: venv
	$(VPY) -m pytest -q -n auto -m "not verilator and not fpga"

sim: venv
	$(VPY) -m pytest -q -n auto -m verilator

N    ?= 1000
SEED ?=
fuzz: venv
	cd tests && ../$(VPY) graph_fuzz.py --n $(N) $(if $(SEED),--seed $(SEED))
	cd tests && ../$(VPY) isa_fuzz.py --preset all --n $(N) $(if $(SEED),--seed $(SEED))

# BENCH_BACKEND=isasim: no Verilator at all (every figure from the ISA simulator's cycle model)
BENCH_BACKEND ?= verilator
bench: venv
	$(STAMEN) bench --backend $(BENCH_BACKEND)

verilog: venv
	$(STAMEN) verilog --preset $(PRESET)

bitstream: venv
	$(STAMEN) bitstream --board $(BOARD)

clean:
	rm -rf build
