"""Board tops: an :class:`~hw.fpga_device.FpgaDevice` wired to a board's clock, UART and LEDs.

Which configuration each board builds, and its device memory, live in :data:`BOARDS`: the iCEBreaker
(iCE40UP5K) runs the ``tiny`` preset with its 128 KiB device memory in the four SPRAMs; the ULX3S
(ECP5-85F) runs the ``small`` preset with the device memory cut to what its block RAM holds.
"""
from dataclasses import dataclass, field

from amaranth import *
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer

from .fpga_device import FpgaDevice, MemoryPortBase
from .params import AccelConfig

__all__ = ["BoardSpec", "BOARDS", "BoardTop", "board_config", "Ice40SpramPort"]

#: Words and width of one iCE40UP5K SPRAM block (SB_SPRAM256KA).
_SPRAM_DEPTH, _SPRAM_WIDTH, _SPRAM_BLOCKS = 16384, 16, 4


@dataclass(frozen=True)
class BoardSpec:
    """One supported board: its platform class, preset, config changes, UART baud and LED roles."""
    platform: str                       # "module:Class" in amaranth_boards
    preset: str
    changes: dict = field(default_factory=dict)
    baud: int = 115200
    leds: tuple = ()                    # (resource name, number) for busy, done, error
    synth_opts: str = ""
    extra_resources: str = ""           # attribute of the platform class to add_resources() first
    spram: bool = False                 # device memory in iCE40 SPRAM


BOARDS = {
    "icebreaker": BoardSpec(
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform", preset="tiny",
        leds=(("led", 2), ("led", 1), ("led", 0)),           # busy: break-off; done green; error red
        synth_opts="-dsp", extra_resources="break_off_pmod", spram=True),
    "ulx3s": BoardSpec(
        platform="amaranth_boards.ulx3s:ULX3S_85F_Platform", preset="small",
        changes={"mem_bytes": 1 << 17},
        leds=(("led", 0), ("led", 1), ("led", 2))),
}


def board_config(board: str) -> AccelConfig:
    """Return the configuration a board's bitstream implements (name ``<preset>-<board>``)."""
    if board not in BOARDS:
        raise ValueError(f"Board must be one of {tuple(BOARDS)}, not {board!r}")
    spec = BOARDS[board]
    base = AccelConfig.preset(spec.preset)
    if not spec.changes:
        return base
    return base.replace(name=f"{spec.preset}-{board}", **spec.changes)


class Ice40SpramPort(MemoryPortBase):
    """Device memory in iCE40UP5K SPRAM blocks, with :class:`hw.fpga_device.MemoryPortBase`'s
    contract.

    Amaranth memories carry initial contents, which SPRAM cannot have, so Yosys would put the device
    memory in block RAM; this instantiates ``SB_SPRAM256KA`` blocks (16K x 16 each) directly.
    Contents are undefined after configuration.

    Raises
    ------
    ValueError
        When the bus is not 16 bits wide or the memory needs more than the UP5K's four blocks.
    """

    def __init__(self, cfg: AccelConfig):
        if cfg.mem_bus_bits != _SPRAM_WIDTH:
            raise ValueError(f"SPRAM device memory needs a {_SPRAM_WIDTH}-bit bus, not "
                             f"{cfg.mem_bus_bits} bits")
        self._blocks = -(-cfg.mem_words // _SPRAM_DEPTH)
        if self._blocks > _SPRAM_BLOCKS:
            raise ValueError(f"SPRAM device memory must be at most {_SPRAM_BLOCKS * _SPRAM_DEPTH} "
                             f"words, not {cfg.mem_words}")
        super().__init__(cfg)

    def elaborate(self, platform):
        m = Module()
        req = self.i_mem_req
        take_read, take_write = self.handshake(m)
        low_bits = (_SPRAM_DEPTH - 1).bit_length()
        block = Signal(range(max(2, self._blocks)))
        if self._blocks > 1:
            m.d.comb += block.eq(req.p.addr[low_bits:])
        read_block = Signal.like(block)
        with m.If(take_read):
            m.d.sync += read_block.eq(block)
        with m.Switch(read_block):
            for b in range(self._blocks):
                out = Signal(_SPRAM_WIDTH, name=f"spram{b}_out")
                m.submodules[f"spram{b}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=req.p.addr[:low_bits], i_DATAIN=req.p.wdata, i_MASKWREN=0b1111,
                    i_WREN=take_write, i_CHIPSELECT=(take_read | take_write) & (block == b),
                    i_CLOCK=ClockSignal(), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=out)
                with m.Case(b):
                    m.d.comb += self.o_mem_rsp.p.rdata.eq(out)
        return m


class BoardTop(Elaboratable):
    """The FPGA top for ``board``: the device core, its UART on the board's UART pins, three LEDs.

    The clock is the platform's default clock; there is no reset input (registers start at their
    initial values after configuration).
    """

    def __init__(self, board: str):
        self.cfg = board_config(board)
        self.spec = BOARDS[board]

    def elaborate(self, platform):
        m = Module()
        clk_freq = int(platform.default_clk_frequency)
        memory_port = Ice40SpramPort(self.cfg) if self.spec.spram else None
        m.submodules.device = device = FpgaDevice(self.cfg, clk_freq=clk_freq,
                                                  baud=self.spec.baud, memory_port=memory_port)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_pin = rx_pin = io.Buffer("i", uart.rx)
        m.submodules.tx_pin = tx_pin = io.Buffer("o", uart.tx)
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(rx_pin.i, rx, init=1)
        m.d.comb += [device.rx.eq(rx), tx_pin.o.eq(device.tx)]
        for i, (name, number) in enumerate(self.spec.leds):
            m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request(name, number, dir="-"))
            m.d.comb += led.o.eq(device.leds[i])
        return m
