"""Board tops: an :class:`~hw.fpga_device.FpgaDevice` wired to a board's clock, UART and LEDs.

Which configuration each board builds, and its device memory, live in :data:`BOARDS`: the iCEBreaker
(iCE40UP5K) runs the ``tiny`` preset with its 64 KiB device memory in SPRAM; the ULX3S (ECP5-85F) runs
the ``small`` preset with the device memory cut to what its block RAM holds.
"""
from dataclasses import dataclass, field

from amaranth import *

from .params import AccelConfig

__all__ = ["BoardSpec", "BOARDS", "BoardTop", "board_config"]


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


BOARDS = {
    "icebreaker": BoardSpec(
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform", preset="tiny",
        leds=(("led", 2), ("led", 1), ("led", 0)),           # busy: break-off; done green; error red
        synth_opts="-dsp -spram", extra_resources="break_off_pmod"),
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


class BoardTop(Elaboratable):
    """The FPGA top for ``board``: the device core, its UART on the board's UART pins, three LEDs.

    The clock is the platform's default clock; there is no reset input (registers start at their
    initial values after configuration).
    """

    def __init__(self, board: str):
        self.cfg = board_config(board)
        self.spec = BOARDS[board]

    def elaborate(self, platform):
        from .fpga_device import FpgaDevice
        m = Module()
        clk_freq = int(platform.default_clk_frequency)
        m.submodules.device = device = FpgaDevice(self.cfg, clk_freq=clk_freq,
                                                  baud=self.spec.baud)
        uart = platform.request("uart", 0)
        m.d.comb += [device.rx.eq(uart.rx.i), uart.tx.o.eq(device.tx)]
        for i, (name, number) in enumerate(self.spec.leds):
            m.d.comb += platform.request(name, number).o.eq(device.leds[i])
        return m
