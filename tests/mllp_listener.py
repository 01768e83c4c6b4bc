"""A real MLLP receiver on 127.0.0.1 for the coexistence feed's tests: python-hl7's asyncio
server (``hl7.mllp``) in a thread, answering each message with an ACK of a chosen code and
counting what it received. It can go down and come back on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

import hl7
import hl7.mllp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Listener:
    """``received``: every message's text in arrival order (a repeat counts twice)."""

    def __init__(self, port: int | None = None, ack_code: str = "AA") -> None:
        self.port = port or free_port()
        self.ack_code = ack_code
        self.received: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def control_ids(self) -> list[str]:
        return [str(hl7.parse(m).segment("MSH")(10)) for m in self.received]

    def events(self) -> list[str]:
        return [str(hl7.parse(m).segment("MSH")(9)(1)(2)) for m in self.received]

    async def _handle(self, reader, writer) -> None:
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                self.received.append(str(message))
                ack = message.create_ack(self.ack_code)
                if self.ack_code != "AA":
                    ack = hl7.parse(f"{ack}\rERR|||207^Application internal error^HL70357")
                writer.writemessage(ack)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def start(self) -> Listener:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._server = await hl7.mllp.start_hl7_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )
            started.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the MLLP test listener did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._server is None:
            return
        loop, server = self._loop, self._server

        async def close() -> None:
            server.close()
            await server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = self._server = self._thread = None

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
