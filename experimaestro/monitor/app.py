"""The monitor's web application (Starlette): the page, its JSON API and the live stream.

| route                                   | answers                                                 |
|-----------------------------------------|---------------------------------------------------------|
| ``GET /``                               | the page (static files in ``static/``, no build step)   |
| ``GET /api/experiments``                | experiments with their counts per state                 |
| ``GET /api/jobs?experiment&state&tag&q&offset&limit`` | one page of the filtered job list         |
| ``GET /api/timeline?experiment``        | one bar per job (submitted, started, ended, state)      |
| ``GET /api/job/{type id}/{id}``         | a job: parameters tree, dependencies, dependents...     |
| ``GET /api/job/{type id}/{id}/explain`` | the ``explain-id`` view                                 |
| ``GET /api/job/{type id}/{id}/log/{stdout,stderr}?offset&wait`` | a chunk (or the tail) of a log |
| ``POST /api/job/{type id}/{id}/kill``   | stop a running job (needs the token header)             |
| ``GET /api/events``                     | server-sent events: jobs that changed, logs that grew   |
"""

from __future__ import annotations

import asyncio
import json
import threading
from html import escape
from pathlib import Path
from typing import Any, Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .actions import ActionError, kill_job
from .auth import TokenGate
from .index import JobIndex
from .views import explain_text, job_details, job_log, job_page, parse_tag_filters, timeline

STATIC = Path(__file__).parent / "static"
#: A comment line is sent on an idle stream this often (seconds), so that a closed page is noticed.
KEEPALIVE = 15.0


class Hub:
    """Fans the index's messages out to the open pages (one queue per live stream)."""

    def __init__(self, index: JobIndex) -> None:
        self.index = index
        self._queues: set[asyncio.Queue] = set()
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.closed = False
        index.add_listener(self.publish)

    def publish(self, message: dict[str, Any]) -> None:
        """Send a message to every open page (from any thread)."""
        data = json.dumps(message)
        with self._lock:
            queues, loop = list(self._queues), self._loop
        if loop is None:
            return
        for queue in queues:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, data)
            except RuntimeError:  # the loop is closed: the server is stopping
                return

    async def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._queues.add(queue)
        await run_in_threadpool(self.index.acquire)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            if queue not in self._queues:
                return
            self._queues.discard(queue)
        self.index.release()

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._queues)

    def close(self) -> None:
        """End every stream (the server stops)."""
        self.closed = True
        with self._lock:
            queues, loop = list(self._queues), self._loop
        if loop is not None:
            for queue in queues:
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, None)
                except RuntimeError:
                    pass


def create_app(
    index: JobIndex,
    token: str,
    *,
    require_token: bool,
    port: int,
    experiment: Optional[str] = None,
) -> tuple[Any, Hub]:
    """The ASGI application of a monitor over ``index``, behind the token gate, and its hub.

    :param experiment: the experiment shown first (the controller's own); None: the list of all
    """
    hub = Hub(index)

    async def ready() -> None:
        await run_in_threadpool(index.ensure_fresh)

    async def page(request: Request) -> Response:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        html = html.replace("{{TOKEN}}", escape(token)).replace(
            "{{EXPERIMENT}}", escape(experiment or "")
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def experiments(request: Request) -> Response:
        await ready()
        return JSONResponse({"experiments": index.experiment_list(), "default": experiment})

    def _int(request: Request, name: str, default: int) -> int:
        try:
            return int(request.query_params.get(name, default))
        except ValueError:
            return default

    async def jobs(request: Request) -> Response:
        await ready()
        q = request.query_params
        result = job_page(
            index,
            q.get("experiment") or None,
            set(q.getlist("state")),
            parse_tag_filters(q.getlist("tag")),
            q.get("q", ""),
            max(0, _int(request, "offset", 0)),
            _int(request, "limit", 100),
        )
        return JSONResponse(result)

    async def timeline_route(request: Request) -> Response:
        await ready()
        return JSONResponse(timeline(index, request.query_params.get("experiment") or None))

    def _key(request: Request) -> str:
        return f"{request.path_params['typeid']}/{request.path_params['identifier']}"

    def _unknown(key: str) -> Response:
        return JSONResponse({"error": f"no job {key} in this workspace"}, status_code=404)

    async def _record(request: Request) -> tuple[str, Any]:
        """The job named by the URL: its key, and its record (None when unknown)."""
        await ready()
        key = _key(request)
        return key, index.jobs.get(key)

    async def job(request: Request) -> Response:
        await ready()
        key = _key(request)
        details = await run_in_threadpool(job_details, index, key)
        return _unknown(key) if details is None else JSONResponse(details)

    async def explain(request: Request) -> Response:
        key, record = await _record(request)
        if record is None:
            return _unknown(key)
        return JSONResponse(await run_in_threadpool(explain_text, record.files.params))

    async def log(request: Request) -> Response:
        key, record = await _record(request)
        stream = request.path_params["stream"]
        if record is None:
            return _unknown(key)
        if stream not in ("stdout", "stderr"):
            return JSONResponse({"error": "the log is stdout or stderr"}, status_code=404)
        offset = request.query_params.get("offset")
        chunk = await run_in_threadpool(job_log, record, stream, int(offset) if offset else None,
                                        bool(request.query_params.get("wait")))
        return JSONResponse(chunk)

    async def kill(request: Request) -> Response:
        key, record = await _record(request)
        if record is None:
            return _unknown(key)
        try:
            message = await run_in_threadpool(kill_job, record.files)
        except ActionError as exc:
            return JSONResponse({"error": f"cannot stop {key}: {exc}"}, status_code=409)
        return JSONResponse({"message": message})

    async def events(request: Request) -> Response:
        if hub.closed:
            return PlainTextResponse("the monitor is stopping", status_code=503)
        queue = await hub.subscribe()

        async def stream() -> Any:
            try:
                yield "retry: 2000\n\n"
                yield f"data: {json.dumps({'type': 'hello'})}\n\n"
                while True:
                    try:
                        data = await asyncio.wait_for(queue.get(), KEEPALIVE)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if data is None:
                        return
                    yield f"data: {data}\n\n"
            finally:
                hub.unsubscribe(queue)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    routes = [
        Route("/", page),
        Route("/api/experiments", experiments),
        Route("/api/jobs", jobs),
        Route("/api/timeline", timeline_route),
        Route("/api/job/{typeid}/{identifier}", job),
        Route("/api/job/{typeid}/{identifier}/explain", explain),
        Route("/api/job/{typeid}/{identifier}/log/{stream}", log),
        Route("/api/job/{typeid}/{identifier}/kill", kill, methods=["POST"]),
        Route("/api/events", events),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    return TokenGate(app, token, require_token=require_token, port=port), hub


__all__ = ["Hub", "create_app"]
