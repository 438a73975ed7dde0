"""The GDB remote serial protocol's framing: `$payload#checksum`, acks, Ctrl-C.

A packet is `$`, the payload, `#` and two hex digits of the payload's byte
sum mod 256; the receiver answers `+` (good) or `-` (send again) until both
sides agree to stop acking (QStartNoAckMode).  A lone 0x03 byte outside a
packet is an interrupt request (Ctrl-C); gdb sends nothing else while the
program runs.  In a payload, `}` escapes the next byte
(XORed with 0x20) so that `$`, `#`, `}` and `*` can be sent as data.

Bad input never raises past this module: a bad checksum is refused with
`-`, an oversized packet or a closed socket ends the connection.
"""

from __future__ import annotations

import select
import socket

MAX_PACKET = 0x4000         # what qSupported advertises as PacketSize
INTERRUPT = b"\x03"
_ESCAPED = b"#$}*"


class Disconnected(Exception):
    """The client went away, or broke the protocol badly enough to be dropped."""


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    out = bytearray()
    for byte in data:
        if byte in _ESCAPED:
            out += bytes((0x7D, byte ^ 0x20))
        else:
            out.append(byte)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    escaped = False
    for byte in data:
        if escaped:
            out.append(byte ^ 0x20)
            escaped = False
        elif byte == 0x7D:
            escaped = True
        else:
            out.append(byte)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    body = escape(payload)
    return b"$" + body + b"#" + b"%02x" % checksum(body)


class Connection:
    """One client on a socket: reads packets and interrupts, writes replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.acks = True
        self.interrupted = False
        self._buffer = bytearray()

    def _fill(self, timeout: float | None) -> bool:
        """Read what the socket has (waiting up to `timeout` seconds); False if nothing came."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        try:
            data = self.sock.recv(65536)
        except OSError as error:
            raise Disconnected(str(error)) from None
        if not data:
            raise Disconnected("the client closed the connection")
        self._buffer += data
        return True

    def poll_interrupt(self) -> bool:
        """Without waiting: has the client asked to stop (Ctrl-C) since the last look?"""
        while self._fill(0):
            pass
        if INTERRUPT[0] in self._buffer:
            self._buffer = self._buffer.replace(INTERRUPT, b"")
            self.interrupted = True
        interrupted, self.interrupted = self.interrupted, False
        return interrupted

    def wait_for(self, fd: int) -> bool:
        """Block until `fd` is readable (False) or the client asks to stop (True, Ctrl-C)."""
        while not self.poll_interrupt():
            ready, _, _ = select.select([fd, self.sock], [], [])
            if fd in ready:
                return False
        return True

    def read_packet(self) -> bytes:
        """The next well-formed packet's payload (acked); bad ones are refused and skipped."""
        while True:
            start = self._buffer.find(b"$")
            if start < 0:
                if INTERRUPT[0] in self._buffer:
                    self.interrupted = True
                self._buffer.clear()
                self._fill(None)
                continue
            if INTERRUPT[0] in self._buffer[:start]:
                self.interrupted = True
            del self._buffer[:start]
            end = self._buffer.find(b"#")
            if end < 0 or len(self._buffer) < end + 3:
                if len(self._buffer) > MAX_PACKET + 4:
                    raise Disconnected(f"packet longer than {MAX_PACKET} bytes")
                self._fill(None)
                continue
            body = bytes(self._buffer[1:end])
            sent = bytes(self._buffer[end + 1:end + 3])
            del self._buffer[:end + 3]
            try:
                good = int(sent, 16) == checksum(body)
            except ValueError:
                good = False
            if not good:
                if self.acks:
                    self._send_raw(b"-")
                continue
            if self.acks:
                self._send_raw(b"+")
            return unescape(body)

    def send(self, payload: bytes) -> None:
        """Send one packet; with acks on, resend it (a few times) until the client says `+`."""
        packet = frame(payload)
        for _ in range(5):
            self._send_raw(packet)
            if not self.acks:
                return
            while not self._buffer:
                self._fill(None)
            ack = self._buffer[0]
            if ack in b"+-":
                del self._buffer[0]
            if ack != ord("-"):
                return
        raise Disconnected("the client refused the same reply five times")

    def _send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise Disconnected(str(error)) from None

    def close(self) -> None:
        self.sock.close()
