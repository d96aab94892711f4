"""8N1 UART receiver and transmitter with stream interfaces.

Both take the clock frequency and the baud rate; one bit lasts ``divisor = round(clk_freq / baud)``
clock cycles. The divisor must be at least :data:`MIN_DIVISOR` and the baud rate it gives must be
within :data:`MAX_BAUD_ERROR` of the one asked for.
"""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "RxByte", "MIN_DIVISOR", "MAX_BAUD_ERROR", "uart_divisor"]

#: Fewest clock cycles per bit (the receiver samples in the middle of a bit).
MIN_DIVISOR = 4
#: Largest relative difference between the asked-for and the generated baud rate.
MAX_BAUD_ERROR = 0.02

#: Payload of the receiver's stream: the byte and whether its stop bit was missing.
RxByte = data.StructLayout({"data": 8, "framing_error": 1})


def uart_divisor(clk_freq, baud) -> int:
    """Return the clock cycles per bit for ``clk_freq`` (Hz) and ``baud`` (bits per second).

    Raises
    ------
    TypeError
        When either is not a positive number.
    ValueError
        When the divisor is below :data:`MIN_DIVISOR` or the baud error exceeds
        :data:`MAX_BAUD_ERROR`.
    """
    for name, v in (("clock frequency", clk_freq), ("baud rate", baud)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
            raise TypeError(f"UART {name} must be a positive number, not {v!r}")
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"UART clock frequency / baud rate must be at least {MIN_DIVISOR}, "
                         f"not {clk_freq / baud!r} ({clk_freq!r} Hz / {baud!r} Bd)")
    error = abs(clk_freq / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"UART baud rate error must be at most {MAX_BAUD_ERROR:.0%}, not "
                         f"{error:.2%} ({clk_freq!r} Hz / {divisor} = {clk_freq / divisor:.0f} Bd "
                         f"for {baud!r} Bd)")
    return divisor


class UartRx(wiring.Component):
    """8N1 UART receiver.

    The line is synchronised by two flip-flops. A falling edge starts a character; the start bit
    is checked half a bit later (a glitch shorter than that is ignored), then the eight data bits
    (LSB first) and the stop bit are sampled in the middle of each bit. A low stop bit is a
    framing error: the byte is delivered with ``framing_error`` set, and the receiver waits for the
    line to go high again before it looks for the next start bit.

    ``o_data`` offers each byte until it is taken; a byte that completes while the previous one
    is still offered replaces it (overrun; put a FIFO behind the receiver when the consumer can
    stall).

    Parameters
    ----------
    clk_freq : int or float
        Clock frequency in Hz.
    baud : int or float
        Bits per second.

    Members
    -------
    rx : ``In(1, init=1)``; the serial line (idle high).
    o_data : ``Out(stream.Signature(RxByte))``
    """

    def __init__(self, clk_freq, baud):
        self._divisor = uart_divisor(clk_freq, baud)
        super().__init__({"rx": In(1, init=1), "o_data": Out(stream.Signature(RxByte))})

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        line = Signal(init=1)
        s1_line = Signal(init=1)
        m.d.sync += [s1_line.eq(self.rx), line.eq(s1_line)]

        timer = Signal(range(div))
        bit = Signal(range(9))
        shift = Signal(8)
        o = self.o_data
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.next = "IDLE"           # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(div - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    m.d.sync += [o.valid.eq(1), o.p.data.eq(shift),
                                 o.p.framing_error.eq(~line)]
                    with m.If(line):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """8N1 UART transmitter.

    ``i_data`` is ready while the transmitter is idle; a byte taken in cycle ``t`` starts its
    start bit in cycle ``t + 1`` and the transmitter is ready again after the stop bit (10 bit
    times per byte, back to back when bytes keep coming).

    Parameters
    ----------
    clk_freq : int or float
        Clock frequency in Hz.
    baud : int or float
        Bits per second.

    Members
    -------
    i_data : ``In(stream.Signature(8))``
    tx : ``Out(1, init=1)``; the serial line (idle high), driven by a flip-flop.
    """

    def __init__(self, clk_freq, baud):
        self._divisor = uart_divisor(clk_freq, baud)
        super().__init__({"i_data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        timer = Signal(range(div))
        bits = Signal(range(11))            # bits still to send, the current one included
        frame = Signal(10, init=0x3FF)       # start, 8 data bits LSB first, stop
        i = self.i_data
        m.d.comb += [i.ready.eq(bits == 0), self.tx.eq(frame[0])]
        with m.If(i.valid & i.ready):
            m.d.sync += [frame.eq(Cat(C(0, 1), i.payload, C(1, 1))), bits.eq(10),
                         timer.eq(div - 1)]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [frame.eq(Cat(frame[1:], C(1, 1))), bits.eq(bits - 1),
                             timer.eq(div - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
