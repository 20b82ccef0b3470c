"""Serve the Flask app from inside our own CLI: gunicorn processes, each an asyncio server with a thread pool.

gunicorn keeps the process model (workers, restarts, our hooks, the Prometheus directory). Inside each
worker uvicorn reads requests on an event loop, and `BufferedWSGI` hands a request to one of
LEADBRIDGE_WEB_THREADS threads only once its whole body has arrived, so a client sending its body slowly
holds a socket, never a thread. `ReadTimeoutProtocol` gives every request LEADBRIDGE_WEB_READ_TIMEOUT
seconds from its first byte to its last (then 408 and the connection closes), caps the header block, and
closes a connection after an early answer (413, 408, 431) only once the client can have read it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import sys
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import orjson
from gunicorn.app.base import BaseApplication
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from bridge.webhooks import BUFFERED_BODY_KEY  # set in the environ: the body was read whole
from core.settings import Settings

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024  # request line + header names and values; more gets 431
LINGER_SECONDS = 2.0  # after an early answer, read and drop what the client still sends for this long, then close


class WebServer(BaseApplication):  # type: ignore[misc]
    """gunicorn with its configuration taken from Settings instead of argv or a config file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": f"{self.settings.host}:{self.settings.port}",
            "workers": self.settings.web_workers,
            "worker_class": worker_class(self.settings),
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            "loglevel": self.settings.log_level.lower(),
            "proc_name": "leadbridge-web",
            "child_exit": _child_exit,
            "post_worker_init": _post_worker_init,
        }
        from cli.context import gunicorn_log_options

        options.update(gunicorn_log_options(self.settings))  # its error log through our handler, no access log
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Imported here so each gunicorn worker builds its own app (own DB pool, own Redis connection).
        from bridge import create_app

        return BufferedWSGI(create_app(), threads=self.settings.web_threads,
                            max_body_bytes=self.settings.max_body_bytes)


def worker_class(settings: Settings) -> type[UvicornWorker]:
    """The gunicorn worker class for these settings (the read timeout is a class attribute of its protocol)."""
    protocol = type("ReadTimeoutProtocol", (ReadTimeoutProtocol,), {"read_timeout": settings.web_read_timeout})
    return type("LeadbridgeWorker", (LeadbridgeWorker,),
                {"CONFIG_KWARGS": {**LeadbridgeWorker.CONFIG_KWARGS, "http": protocol}})


class LeadbridgeWorker(UvicornWorker):  # type: ignore[misc]
    """uvicorn's gunicorn worker, with its logs going our way and no lifespan or WebSocket support."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "auto", "http": "httptools", "ws": "none", "lifespan": "off",
                                              "server_header": False}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's loggers were given gunicorn's handlers (none: ours removed them) and no propagation,
        # which would send their warnings to Python's last-resort stderr handler, outside the JSON stream.
        error = logging.getLogger("uvicorn.error")
        error.handlers, error.propagate = [], True
        # Its INFO lines ("Started server process", ...) repeat gunicorn's "Booting worker".
        error.setLevel(logging.DEBUG if self.log.error_log.level <= logging.DEBUG else logging.WARNING)
        access = logging.getLogger("uvicorn.access")
        access.handlers, access.propagate = [], False  # no access log, like gunicorn's before


# --- the HTTP protocol: read timeout, header cap, honest close ------------------------------------


class _CycleTransport:
    """The transport a request's cycle writes to: its close() goes through the protocol (to linger)."""

    __slots__ = ("_close", "_transport")

    def __init__(self, transport: asyncio.Transport, close: Callable[[], None]) -> None:
        self._transport, self._close = transport, close

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._close()


class _HeadersTooLarge(Exception):
    pass


class ReadTimeoutProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools protocol with a deadline for each request and a lingering close.

    A connection must deliver each request whole (request line, headers, body) within `read_timeout`
    seconds of its first byte, and its first byte within `read_timeout` of connecting. Past that a
    half-received request gets 408 with a JSON body and the connection closes; one that sent nothing is
    closed. An answer given while the request is still arriving (408, 413, 431) is followed by a
    lingering close: the write side is shut, what the client still sends is read and dropped for up to
    LINGER_SECONDS, then the socket closes. Closing at once would reset the connection, and a reset can
    destroy the answer before the client reads it.
    """

    read_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._mid_request = False  # between a request's first byte and its last
        self._reading_cycle: Any = None  # the cycle of the request being read, once its headers are in
        self._header_bytes = 0
        self._headers_too_large = False
        self._lingering = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is out; what follows is dropped
        super().data_received(data)

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._mid_request, self._reading_cycle, self._header_bytes = True, None, 0
        if self._read_timer is None:
            self._arm_read_timer()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.transport, _CycleTransport):
            cycle.transport = _CycleTransport(self.transport, self._close_after_answer)
        self._reading_cycle = cycle

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._mid_request, self._reading_cycle = False, None
        self._cancel_read_timer()

    def on_response_complete(self) -> None:
        if not self._lingering:  # lingering: no keep-alive, no next request
            super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        if self._headers_too_large:
            self._answer_early(431, "headers_too_large", f"request headers exceed {MAX_HEADER_BYTES} bytes")
            return
        super().send_400_response(msg)

    # our additions

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._headers_too_large = True
            raise _HeadersTooLarge  # httptools turns it into a parser error: send_400_response answers

    def _arm_read_timer(self) -> None:
        self._cancel_read_timer()
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing() or self._lingering:
            return
        if not self._mid_request:
            self.transport.close()  # connected and sent nothing
            return
        log.info("web.read_timeout", extra={"client": self.client[0] if self.client else None,
                                            "headers_received": self._reading_cycle is not None})
        cycle = self._reading_cycle
        if cycle is None:
            # Headers incomplete: answer unless an earlier request's answer is still being written.
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.close()
                return
        elif cycle.response_started or any(queued is cycle for queued, _ in self.pipeline):
            self.transport.close()  # an answer is being written (or an earlier one is pending): cannot add one
            return
        else:
            cycle.disconnected = True  # the app waiting for the body sees http.disconnect and answers nothing
            cycle.message_event.set()
        self._answer_early(408, "request_timeout",
                           f"the request did not arrive whole within {self.read_timeout:g} seconds")

    def _answer_early(self, status: int, error: str, message: str) -> None:
        self.transport.write(raw_response(status, {"error": error, "message": message}))
        self._linger()

    def _close_after_answer(self) -> None:
        if self._mid_request:
            self._linger()  # the app answered (413) before the request finished arriving
        else:
            self.transport.close()

    def _linger(self) -> None:
        self._cancel_read_timer()
        if self._lingering or self.transport.is_closing():
            return
        self._lingering = True
        self._unset_keepalive_if_required()
        try:
            self.transport.write_eof()  # the answer, then FIN
        except (OSError, RuntimeError, NotImplementedError):
            self.transport.close()
            return
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)


def raw_response(status: int, payload: dict[str, Any]) -> bytes:
    """A complete HTTP/1.1 answer with a JSON body that closes the connection."""
    body = orjson.dumps(payload)
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body])


# --- the application side: whole bodies, then a thread ---------------------------------------------


class BufferedWSGI:
    """An ASGI app that reads each request whole, then runs a WSGI app on it in a fixed thread pool.

    A body larger than `max_body_bytes` is refused with 413 before it is read (by its Content-Length) or
    as soon as it passes the limit (chunked). The response is collected in the thread and written by the
    event loop; the app's `close()` (where Flask runs `call_on_close` callbacks, the queue hand-off) runs
    in a thread after the answer was written, as a WSGI server would.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], *, threads: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="web")

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        declared = _declared_length(scope["headers"])
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(send, f"body is {declared} bytes; the limit is {self.max_body_bytes}")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone, or cut off by the read timeout (which answered already)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(send, f"body exceeds the limit of {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        environ = wsgi_environ(scope, b"".join(chunks))
        loop = asyncio.get_running_loop()
        status, headers, body, iterable = await loop.run_in_executor(self.executor, self._run_app, environ)
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                await loop.run_in_executor(self.executor, close)

    def _run_app(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes, Any]:
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., None]:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return written.append

        iterable = self.app(environ, start_response)
        try:
            written.extend(iterable)
        except BaseException:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
            raise
        status, raw_headers = started
        body = b"".join(written)
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in raw_headers]
        code = int(status.split(" ", 1)[0])
        if (environ["REQUEST_METHOD"] != "HEAD" and code not in (204, 304) and code >= 200
                and not any(name in (b"content-length", b"transfer-encoding") for name, _ in headers)):
            headers.append((b"content-length", str(len(body)).encode()))
        return code, headers, body, iterable

    @staticmethod
    async def _refuse(send: Callable[..., Any], message: str) -> None:
        # Answered before the body is read: the connection closes (after a lingering read, see the protocol).
        body = orjson.dumps({"error": "payload_too_large", "message": message})
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # httptools refuses a malformed Content-Length before we get here
    return None


def wsgi_environ(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The PEP 3333 environ for an ASGI HTTP scope whose body was read whole."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    server_host, server_port = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        # PEP 3333: the percent-decoded path's bytes, as latin-1 (what gunicorn gives)
        "PATH_INFO": urllib.parse.unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server_host,
        "SERVER_PORT": str(server_port or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        BUFFERED_BODY_KEY: True,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if "_" in name:
            continue  # X_Forwarded_For would pose as X-Forwarded-For (gunicorn drops these too)
        key = name.upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            continue  # the body's real length is set above
        if key != "CONTENT_TYPE":
            key = "HTTP_" + key
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


# --- gunicorn hooks and the metrics directory ------------------------------------------------------


def prepare_multiprocess_metrics(data_dir: Path) -> None:
    """Give gunicorn's workers a fresh shared directory for Prometheus metrics (one per web process)."""
    path = Path(data_dir).resolve() / f"prometheus-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _post_worker_init(_worker: Any) -> None:
    from core.gc_tuning import settle_heap

    settle_heap()  # the app is loaded: keep full collections from stalling requests


def _child_exit(_server: Any, worker: Any) -> None:
    # A dead worker's live gauges must stop counting; its counters stay in the totals.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
