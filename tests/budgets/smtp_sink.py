"""A tiny SMTP server on loopback that keeps every message it is sent (enough for smtplib)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message


@dataclass
class SmtpSink:
    messages: list[Message] = field(default_factory=list)
    port: int = 0

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        await say("220 sink ESMTP")
        try:
            while True:
                line = (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    await say("250 sink")
                elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                    await say("250 OK")
                elif verb == "DATA":
                    await say("354 end with .")
                    data = await asyncio.wait_for(reader.readuntil(b"\r\n.\r\n"), 10)
                    self.messages.append(message_from_bytes(data[:-5].replace(b"\r\n..", b"\r\n.")))
                    await say("250 queued")
                elif verb == "QUIT" or not line:
                    await say("221 bye")
                    return
                else:
                    await say("502 not here")
        finally:
            writer.close()


@asynccontextmanager
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    server = await asyncio.start_server(sink._session, "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()
