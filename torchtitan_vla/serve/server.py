"""Websocket policy server speaking openpi's protocol.

Per connection: the server first sends the policy's metadata, then answers every observation (one
msgpack-numpy message) with one action chunk ``{"actions": (H, action_dim), ..., "server_timing": {...}}``.
A failure sends the traceback as a text frame and closes the connection with INTERNAL_ERROR (openpi
clients raise it as a RuntimeError); the server keeps serving other and later clients.
``GET /healthz`` answers ``200 OK``. An optional API key is checked on the ``Authorization: Api-Key <key>``
header, the one ``openpi_client.WebsocketClientPolicy(api_key=...)`` sends.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from .protocol import packb, unpackb

logger = logging.getLogger(__name__)


class InferencePolicy(Protocol):
    """What the server needs: the ``Policy`` of this package, or anything shaped like it."""

    metadata: dict[str, Any]

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]: ...


class PolicyServer:
    """Serves one policy. ``serve_forever()`` blocks; ``start()``/``stop()`` run it on a background thread."""

    def __init__(self, policy: InferencePolicy, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None):
        self.policy = policy
        self.host = host
        self.port = port
        self.api_key = api_key or None
        # One model, one inference at a time; running it off the event loop keeps /healthz and new
        # connections answered while a chunk is being sampled.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy-infer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    # -- HTTP side: health check and authentication, before the websocket handshake --
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "OK\n")
        if self.api_key is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Api-Key {self.api_key}".encode()):
                return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        logger.info("client connected: %s", peer)
        loop = asyncio.get_running_loop()
        await ws.send(packb(self.policy.metadata))
        prev_total_ms: float | None = None
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed:
                logger.info("client disconnected: %s", peer)
                return
            start = time.perf_counter()
            try:
                if isinstance(message, str):
                    raise ValueError("expected a binary msgpack-numpy observation, got a text frame")
                obs = unpackb(message)
                if not isinstance(obs, dict):
                    raise ValueError(f"an observation must be a map of keys to values, got {type(obs).__name__}")
                infer_start = time.perf_counter()
                result = await loop.run_in_executor(self._executor, self.policy.infer, obs)
                timing = {"infer_ms": (time.perf_counter() - infer_start) * 1000}
                if prev_total_ms is not None:
                    timing["prev_total_ms"] = prev_total_ms
                await ws.send(packb({**result, "server_timing": timing}))
            except ConnectionClosed:
                logger.info("client disconnected: %s", peer)
                return
            except Exception:
                logger.exception("inference failed for %s", peer)
                try:
                    await ws.send(traceback.format_exc())
                    await ws.close(CloseCode.INTERNAL_ERROR, "Internal server error. Traceback included in previous frame.")
                except ConnectionClosed:
                    pass
                return
            prev_total_ms = (time.perf_counter() - start) * 1000

    def _serve(self):
        # openpi's settings: no per-message compression (arrays barely compress) and no size limit.
        return serve(
            self._handle, self.host, self.port, process_request=self._process_request, compression=None, max_size=None
        )

    async def _run(self) -> None:
        async with self._serve() as server:
            self._server = server
            self._loop = asyncio.get_running_loop()
            # Port 0 asks the OS for a free one; report the one actually bound.
            self.port = server.sockets[0].getsockname()[1]
            logger.info("serving on ws://%s:%d (health check: http://%s:%d/healthz)", self.host, self.port, self.host, self.port)
            self._started.set()
            await server.wait_closed()

    def serve_forever(self) -> None:
        asyncio.run(self._run())

    def start(self, timeout: float = 30.0) -> int:
        """Serve on a daemon thread; returns the bound port once connections are accepted."""
        self._thread = threading.Thread(target=self.serve_forever, name="policy-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"policy server did not start on {self.host}:{self.port} within {timeout} s")
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._executor.shutdown(wait=False)
