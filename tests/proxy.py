"""A loopback TCP proxy a test can cut and restore: a database or a workspace going away for a
moment (every open connection reset, new ones refused) and coming back on the same address."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from tests.servers import free_port


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._lose_answer = threading.Event()
        self.answers_lost = 0

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _run(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    def cut(self) -> None:
        """Refuse new connections and reset every open one, as a failed-over database does."""
        self._run(self._cut())

    def lose_next_answer(self) -> None:
        """Let the next request through, then drop the connection as its answer comes back: the
        request took effect, and the client never hears of it (a replica killed mid-answer)."""
        self._lose_answer.set()

    def restore(self) -> None:
        self._run(self._listen())

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            target_r, target_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, target_w}

        async def pipe(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: bool
        ) -> None:
            try:
                while data := await reader.read(65536):
                    if answers and self._lose_answer.is_set():
                        self._lose_answer.clear()
                        self.answers_lost += 1
                        return
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.transport.abort()
                self._writers.discard(writer)

        await asyncio.gather(pipe(client_r, target_w, False), pipe(target_r, client_w, True))
