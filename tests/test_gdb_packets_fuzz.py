"""Hostile gdb packets never take the stub down: each is answered (an error reply at worst).

Packets go straight to the stub's packet handler over a fake connection,
stopped at the first instruction of a forked program: every packet kind the
stub knows, with hypothesis' bytes, numbers and hex in its fields.  The
resuming and ending packets (c, s, vCont, k, vKill, D) are left out: they
hand control back to the scheduler, which other tests drive with real gdb.
"""

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vmgames.tools.boot import boot
from vmgames.tools.gdb.stub import NO_SIGNAL, GdbStub, Stop, tap_events

COWFORK = "build/cowfork"
RESUMING = (b"c", b"C", b"s", b"S", b"vCont", b"k", b"vKill", b"D")


class FakeConnection:
    acks = True

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)

    def close(self) -> None:
        pass


def _stub() -> tuple[GdbStub, FakeConnection]:
    kernel = boot(16 << 20, stdout=io.BytesIO(), stderr=io.BytesIO())
    proc = kernel.spawn(kernel.fs.open_host(COWFORK), [COWFORK], [])
    connection = FakeConnection()
    stub = GdbStub(kernel, connection, tap_events(kernel), log=io.StringIO())
    kernel._switch_to(proc)
    stub.stop = Stop(proc.pid, NO_SIGNAL)
    return stub, connection


hexes = st.integers(min_value=0, max_value=(1 << 80)).map(lambda n: b"%x" % n)
field = st.one_of(hexes, st.binary(max_size=12), st.sampled_from([b"", b"-1", b"0", b"-", b"ffffffffffffffff"]))
fields = st.lists(field, max_size=4)
kinds = st.sampled_from([b"g", b"G", b"p", b"P", b"m", b"M", b"Z", b"z", b"H", b"T", b"?", b"q", b"Q", b"X", b"v",
                         b"qXfer:features:read:target.xml:", b"qThreadExtraInfo,", b"qRcmd,", b"Hg", b"Hc",
                         b"qSupported", b"qC", b"qfThreadInfo", b"qAttached", b"qSymbol"])
separators = st.sampled_from([b",", b":", b"=", b";", b""])


@st.composite
def packets(draw) -> bytes:
    kind = draw(kinds)
    body = draw(separators).join(draw(fields))
    if kind == b"qRcmd,":
        words = draw(st.lists(st.sampled_from(["pte", "chain", "faults", "stats", "tlb", "break", "fault", "syscall",
                                               "clear", "step-kernel", "maps", "-1", "0x", "99999999999999999999",
                                               "0xffffffffffffffffffff", "\x00", "zz"]), max_size=4))
        body = " ".join(words).encode().hex().encode()
    packet = kind + body
    return packet if not packet.startswith(RESUMING) else b"?" + packet


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(packets(), min_size=1, max_size=8))
def test_every_packet_gets_an_answer_and_the_stub_survives(sequence):
    stub, connection = _stub()
    for packet in sequence:
        before = len(connection.sent)
        stub.handle(packet)
        replies = connection.sent[before:]
        # Monitor commands may send console output (O packets) before their one reply.
        assert replies and all(r.startswith(b"O") for r in replies[:-1]), packet
        assert stub.conn is connection
