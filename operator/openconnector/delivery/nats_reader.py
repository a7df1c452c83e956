"""The JetStream bus connection's reader of the NATS protocol: whole MSG/HMSG frames taken straight out of
each read, the rest left to nats-py's own parser (issue 15).

nats-py's :class:`~nats.protocol.parser.Parser` handles each message the server sends with up to two
regular-expression matches on its ``bytearray`` buffer (``MSG`` then ``HMSG``), a dict of arguments,
``del buf[:n]`` (which moves the rest of the read), two copies and a coroutine (``await
_process_msg(...)``). Per delivery the JetStream gateway reads ~2.2 messages (the PubAck of its publish,
the delivered message, a share of message-log read-backs), so that is paid ~2.2 times per delivery.

:class:`FrameParser` is that parser with a fast path in front: while nats-py's parser holds nothing
(waiting for a control line, empty buffer), each complete ``MSG``/``HMSG`` frame at the start of the
unread bytes is matched once, anchored, on the bytes just read (no buffer, no deletes), sliced, and handed
to the client's ``_process_msg_now`` — a plain call that returns what to await, if anything (the JetStream
connection runs the handler of a direct subscription there and then; other messages get nats-py's
``_process_msg`` coroutine). At the first thing it does not take, the fast path hands the rest of the
bytes to nats-py's parser and nats-py decides, as it did before: INFO, PING, PONG, +OK, -ERR, anything
malformed (protocol errors), a frame not yet complete (nats-py buffers it; the bytes that complete it are
then fed to nats-py alone and the fast path goes on after them; the start of a control line nats-py
holds is put in front of the next read), and a frame whose control line is not of the strict form below.
Measured (session 8): the read path of a message for a direct subscription, handler aside, ~6.0 ->
~4.7 µs; ~2.2 messages per delivery.

Why the fast path does exactly what nats-py would do with the same reads: it only takes a frame whose
control line is ``MSG <subject> <sid> [<reply> ]<size>`` or ``HMSG <subject> <sid> [<reply> ]<header
size> <size>`` with single spaces, a numeric sid and (for HMSG) a header size of at most the size, and
nats-py's looser expressions match such a line with the same fields (pinned by
tests/unit/test_s8_nats_reader.py). One exception, excluded: nats-py's HMSG expression may read past
the end of a line without reply when the next line starts with digits (``\\s+`` also matches CR LF),
so an HMSG frame whose payload starts with whitespace or a digit is left to nats-py (a header block
starts with ``NATS/1.0``); and a header size over the size (nats-py then cuts the header block out of
the bytes that follow) is left to nats-py too. The payload is cut as nats-py cuts it: ``size`` bytes
after the line, header block first, then the two bytes after it skipped. Counters, subscriptions, slow
consumers, JetStream flow control and headers are the client's ``_process_msg``'s business, untouched.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Protocol

from nats.protocol.parser import AWAITING_CONTROL_LINE, CRLF_SIZE, MAX_CONTROL_LINE_SIZE, Parser

# Strict forms of nats-py's MSG_RE and HMSG_RE (nats/protocol/parser.py), matched where a frame starts.
_MSG_LINE = re.compile(rb"MSG (\S+) (\d+) (?:(\S+) )?(\d+)\r\n")
_HMSG_LINE = re.compile(rb"HMSG (\S+) (\d+) (?:(\S+) )?(\d+) (\d+)\r\n(?![\s\d])")
_M = ord("M")
_H = ord("H")


class MessageSink(Protocol):
    """What :class:`FrameParser` needs of its client besides what nats-py's parser needs."""

    def _process_msg_now(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> Awaitable[None] | None:
        """``_process_msg`` as a plain call where it can be one: None when done, else what to await."""


class FrameParser(Parser):
    """nats-py's protocol parser with a fast path for whole MSG/HMSG frames (see the module docstring).
    ``nc`` is the client (a :class:`MessageSink` and whatever nats-py's parser calls)."""

    async def parse(self, data: bytes = b"") -> None:
        if self.state != AWAITING_CONTROL_LINE:
            # nats-py holds a frame's control line and part of its payload: it finishes that frame alone.
            missing = self.needed + CRLF_SIZE - len(self.buf)
            # (A header size over the size makes nats-py cut the header block out of the bytes after it.)
            if len(data) < missing or self.header_needed > self.needed:
                await super().parse(data)
                return
            try:
                await super().parse(data[:missing])
            except BaseException:
                self.buf.extend(data[missing:])  # what nats-py's buffer would hold after this failure
                raise
            data = data[missing:]
        elif self.buf:
            if len(self.buf) >= MAX_CONTROL_LINE_SIZE:  # nats-py keeps gathering: its business
                await super().parse(data)
                return
            # The start of a control line, held by nats-py: the frame starts there.
            data = bytes(self.buf) + data
            self.buf.clear()
        if type(data) is not bytes:  # (a transport's bytearray: slices of bytes, as nats-py's copies)
            data = bytes(data)
        nc: MessageSink = self.nc
        end = len(data)
        at = 0
        try:
            while at < end:
                first = data[at]
                if first == _M:
                    line = _MSG_LINE.match(data, at)
                    if line is None:
                        break
                    subject, sid, reply, size = line.groups()
                    start = line.end()
                    needed = int(size)
                    frame_end = start + needed + CRLF_SIZE
                    if frame_end > end:
                        break
                    headers = None
                    payload = data[start : start + needed]
                elif first == _H:
                    line = _HMSG_LINE.match(data, at)
                    if line is None:
                        break
                    subject, sid, reply, header_size, size = line.groups()
                    start = line.end()
                    needed = int(size)
                    header_needed = int(header_size)
                    frame_end = start + needed + CRLF_SIZE
                    if frame_end > end or header_needed > needed:
                        break
                    if header_needed:
                        headers = data[start : start + header_needed]
                        payload = data[start + header_needed : start + needed]
                    else:
                        headers = None
                        payload = data[start : start + needed]
                else:
                    break
                at = frame_end
                later = nc._process_msg_now(int(sid), subject, reply or b"", payload, headers)
                if later is not None:
                    await later
        except BaseException:
            self.buf.extend(data[at:])  # as nats-py: the frame is consumed, the rest stays buffered
            raise
        if at < end:
            await super().parse(data[at:] if at else data)
