"""The ASGI app of `kvmnet serve` (Starlette): pages, their fragments, /api/ JSON.

Every page is one view of the latest Look (kvmnet.service.look): the topology, networks,
guests' NICs, leases, port forwards, doctor, the plan; with a hosts: spec each per host
(?host=NAME) and a summary. /api/version changes whenever anything shown does; the
page's script (static/app.js) asks for it and, when it changed, fetches the view's
fragment and puts it in place. /api/show, /leases, /doctor, /plan are the CLI's --json
of the same data. Only GET and HEAD: nothing here writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kvmnet.plan.core import SIGNS
from kvmnet.service.look import HostLook, Look, Source, look
from kvmnet.web.guard import Guard
from kvmnet.web.svg import State, layout

HERE = Path(__file__).parent
VIEWS = {"topology": "Topology", "networks": "Networks", "guests": "Guests' NICs",
         "leases": "Leases", "forwards": "Port forwards", "doctor": "Doctor", "plan": "Plan"}
API = {"show", "leases", "doctor", "plan"}


@dataclass(frozen=True)
class Config:
    source: Source
    token: str | None = None
    loopback: bool = True
    tls: bool = False
    refresh: float = 2.0      # seconds between looks at the host (and the page's polls)


class Watcher:
    """The latest Look, read again when it is older than `refresh` seconds; one read
    at a time however many pages ask."""

    def __init__(self, source: Source, refresh: float,
                 looker: Callable[[Source], Look] = look) -> None:
        self.source, self.refresh, self.looker = source, refresh, looker
        self._look: Look | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self) -> Look:
        with self._lock:
            if self._look is None or time.monotonic() - self._at >= self.refresh:
                self._look = self.looker(self.source)
                self._at = time.monotonic()
            return self._look


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["sign"] = lambda kind: SIGNS.get(str(kind).partition(".")[2], "~")
    env.filters["when"] = _when
    return env


def _when(epoch: Any) -> str:
    """A lease's expiry: the UTC time and how far off it is."""
    if not epoch:
        return "-"
    t = datetime.fromtimestamp(int(epoch), UTC)
    left = int(epoch) - int(time.time())
    rel = (f"in {left // 3600}h {left % 3600 // 60}m" if left >= 3600 else
           f"in {left // 60}m {left % 60}s" if left > 0 else "expired")
    return f"{t:%Y-%m-%d %H:%M:%S} UTC ({rel})"


class Site:
    def __init__(self, config: Config, looker: Callable[[Source], Look] = look) -> None:
        self.config = config
        self.watcher = Watcher(config.source, config.refresh, looker)
        self.env = _env()

    def _host(self, lk: Look, request: Request) -> HostLook | None:
        name = request.query_params.get("host")
        if name is None:
            return lk.hosts[0] if lk.hosts else None
        return lk.host(name)

    def _context(self, view: str, request: Request) -> dict[str, Any]:
        lk = self.watcher.get()
        h = self._host(lk, request)
        many = len(lk.hosts) > 1 or bool(lk.plan)
        ctx: dict[str, Any] = {"view": view, "views": VIEWS, "look": lk, "h": h, "many": many,
                               "refresh": self.config.refresh, "version": lk.version,
                               "taken": datetime.fromtimestamp(lk.taken, UTC)}
        if view == "topology" and h is not None and h.graph is not None and h.show:
            ctx["pic"] = layout(h.graph, State(
                {n["name"]: n["active"] for n in h.show["networks"]},
                {x["guest"]: x["running"] for x in h.show["interfaces"]}, h.drift))
        return ctx

    def page(self, request: Request) -> Response:
        view = request.path_params.get("view", "")
        if view not in VIEWS and view != "summary":
            return HTMLResponse("no such view\n", 404)
        html = self.env.get_template("page.html").render(self._context(view, request))
        return HTMLResponse(html)

    def fragment(self, request: Request) -> Response:
        view = request.path_params["view"]
        if view not in VIEWS and view != "summary":
            return HTMLResponse("no such view\n", 404)
        ctx = self._context(view, request)
        html = self.env.get_template("main.html").render(ctx)
        return HTMLResponse(html, headers={"x-kvmnet-version": ctx["version"]})

    def home(self, request: Request) -> Response:
        lk = self.watcher.get()
        return RedirectResponse("/summary" if lk.plan else "/topology", 303)

    def version(self, request: Request) -> Response:
        lk = self.watcher.get()
        return JSONResponse({"version": lk.version, "taken": lk.taken,
                             "seconds": round(lk.seconds, 3)})

    def api(self, request: Request) -> Response:
        what = request.path_params["what"]
        if what not in API:
            return JSONResponse({"error": f"no such data: use one of {sorted(API)}"}, 404)
        lk = self.watcher.get()
        if lk.problems:
            return JSONResponse({"kvmnet": 1, "file": lk.file, "errors": list(lk.problems)},
                                422)
        if what == "plan" and lk.plan is not None and "host" not in request.query_params:
            return JSONResponse(lk.plan)
        h = self._host(lk, request)
        if h is None:
            return JSONResponse({"error": "no such host"}, 404)
        data = getattr(h, what)
        if data is None:
            why = h.error or ("no spec: start kvmnet serve with --spec FILE"
                              if what == "plan" else "not read")
            return JSONResponse({"kvmnet": 1, "uri": h.uri, "error": why}, 503)
        return JSONResponse(data)


def make_app(config: Config, looker: Callable[[Source], Look] = look) -> Starlette:
    """`looker`: what reads the host (tests give a fixed Look)."""
    site = Site(config, looker)
    routes = [
        Route("/", site.home, methods=["GET", "HEAD"]),
        Route("/api/version", site.version, methods=["GET", "HEAD"]),
        Route("/api/{what}", site.api, methods=["GET", "HEAD"]),
        Route("/fragment/{view}", site.fragment, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        Route("/{view}", site.page, methods=["GET", "HEAD"]),
    ]
    app = Starlette(routes=routes)
    app.state.site = site
    return app


def guarded(config: Config, looker: Callable[[Source], Look] = look) -> Guard:
    """The app behind its guard: what uvicorn serves."""
    return Guard(make_app(config, looker), config.token, config.loopback, config.tls)
