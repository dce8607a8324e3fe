"""Websocket policy server speaking openpi's protocol, with limits.

Per connection: the server first sends the policy's metadata, then answers every observation (one
msgpack-numpy message) with one action chunk ``{"actions": (H, action_dim), ..., "server_timing": {...}}``.
Concurrent requests are batched into one policy call (``batcher.RequestBatcher``: bounded queue, maximum
batch and wait). Limits and errors:

* a message over ``max_message_bytes`` is refused from its frame header, before its payload is read (memory
  stays bounded): the connection is closed with code 1009 (message too big) and a reason giving both sizes;
* a request the server refuses (not msgpack-numpy, a bad observation, a full queue) gets a text frame
  naming the problem, which openpi clients raise as ``RuntimeError``; the connection stays open;
* any other failure gets a text frame saying so and a close with INTERNAL_ERROR. Tracebacks and paths
  go to the server log only. The server keeps serving other and later clients in every case.

``GET /healthz`` answers ``200 OK``. An optional API key is checked on the ``Authorization: Api-Key <key>``
header, the one ``openpi_client.WebsocketClientPolicy(api_key=...)`` sends.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http import HTTPStatus
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from .batcher import RequestBatcher
from .protocol import RequestError, decode_observation, packb

logger = logging.getLogger(__name__)


class InferencePolicy(Protocol):
    """What the server needs: the ``Policy`` of this package, or anything shaped like it."""

    metadata: dict[str, Any]
    max_observation_bytes: int

    def prepare(self, obs: dict[str, Any]) -> Any: ...

    def infer_prepared(self, prepared: list[Any]) -> list[dict[str, Any]]: ...


def run_batch(policy: InferencePolicy, observations: list[dict[str, Any]]) -> list[Any]:
    """One result per observation; one that fails preparation gets its exception and stays out of the batch.
    Preparing in arrival order draws each request's noise as serving one at a time would."""
    results: list[Any] = [None] * len(observations)
    prepared = []
    for i, obs in enumerate(observations):
        try:
            prepared.append((i, policy.prepare(obs)))
        except Exception as exc:
            results[i] = exc
    if prepared:
        for (i, _), result in zip(prepared, policy.infer_prepared([p for _, p in prepared])):
            results[i] = result
    return results


def default_max_message_bytes(policy: InferencePolicy) -> int:
    """Twice the largest observation the policy accepts, plus 1 MiB for state, prompt and framing."""
    return 2 * policy.max_observation_bytes + 2**20


class PolicyServer:
    """Serves one policy. ``serve_forever()`` blocks; ``start()``/``stop()`` run it on a background thread."""

    def __init__(self, policy: InferencePolicy, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                 *, max_message_bytes: int | None = None, max_batch: int = 8, max_wait_ms: float = 2.0,
                 max_queue: int = 32):
        self.policy = policy
        self.host = host
        self.port = port
        self.api_key = api_key or None
        self.max_message_bytes = max_message_bytes or default_max_message_bytes(policy)
        self.batching = {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_queue": max_queue}
        self._batcher: RequestBatcher | None = None
        # One model, one batch at a time; running it off the event loop keeps /healthz and new
        # connections answered while chunks are being sampled.
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
        await ws.send(packb(self.policy.metadata))
        prev_total_ms: float | None = None
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed as closed:
                self._log_closed(peer, closed)
                return
            start = time.perf_counter()
            try:
                result, timing = await self._batcher.submit(decode_observation(message))
                if prev_total_ms is not None:
                    timing["prev_total_ms"] = prev_total_ms
                await ws.send(packb({**result, "server_timing": timing}))
            except ConnectionClosed as closed:
                self._log_closed(peer, closed)
                return
            except RequestError as exc:
                logger.warning("refused a request from %s: %s", peer, exc)
                if not await self._send_error(ws, str(exc)):
                    return
            except Exception:
                logger.exception("inference failed for %s", peer)
                if await self._send_error(ws, "internal server error while running the policy (the server log has the details)"):
                    await ws.close(CloseCode.INTERNAL_ERROR, "internal server error")
                return
            prev_total_ms = (time.perf_counter() - start) * 1000

    @staticmethod
    async def _send_error(ws: ServerConnection, text: str) -> bool:
        """The error frame (a text frame, which openpi clients raise); False when the client has gone."""
        try:
            await ws.send(text)
            return True
        except ConnectionClosed:
            return False

    @staticmethod
    def _log_closed(peer: Any, closed: ConnectionClosed) -> None:
        if closed.sent is not None and closed.sent.code == CloseCode.MESSAGE_TOO_BIG:
            logger.warning("refused a message from %s: %s (raise --max-message-mb to allow it)", peer, closed.sent.reason)
        else:
            logger.info("client disconnected: %s", peer)

    def _serve(self):
        # No per-message compression (arrays barely compress), as openpi. max_size is checked on each
        # frame header, so an oversized message is refused before its payload is read; max_queue=1 lets a
        # connection buffer at most one received message while its previous one is being answered.
        return serve(
            self._handle, self.host, self.port, process_request=self._process_request, compression=None,
            max_size=self.max_message_bytes, max_queue=1,
        )

    async def _run(self) -> None:
        async with self._serve() as server:
            self._server = server
            self._loop = asyncio.get_running_loop()
            self._batcher = RequestBatcher(partial(run_batch, self.policy), self._executor, **self.batching)
            batching = self._loop.create_task(self._batcher.run())
            # Port 0 asks the OS for a free one; report the one actually bound.
            self.port = server.sockets[0].getsockname()[1]
            logger.info("serving on ws://%s:%d (health check: http://%s:%d/healthz)", self.host, self.port, self.host, self.port)
            logger.info("limits: messages up to %d bytes, images up to %s px a side; batches of up to %d requests "
                        "waiting up to %s ms, %d requests queued at most", self.max_message_bytes,
                        getattr(self.policy, "max_image_side", "?"), *self.batching.values())
            self._started.set()
            await server.wait_closed()
            batching.cancel()

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
