"""What every fedbus service process shares: the ops HTTP server and a graceful run loop.

A service's ``main.py`` builds its adapters, registers readiness checks, then calls
:meth:`Service.run` with its long-running tasks (consumer runners, timers):

>>> service = Service("aggregator", settings)
>>> service.add_readiness("kafka", lambda: runner_started)
>>> await service.run(runner.run(), deadline_loop())
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from fedbus.settings import FedbusSettings

__all__ = ["Service"]

log = logging.getLogger(__name__)

UP = Gauge("fedbus_service_up", "1 while the service runs", ["service"])


class Service:
    """Ops endpoints (``/healthz``, ``/readyz``, ``/metrics``) plus a signal-aware task runner.

    Parameters
    ----------
    name
        The service name (logs, metrics, Kafka client id).
    settings
        ``http_host``/``http_port`` choose where the ops server listens (port 0: any free one).
    app
        A FastAPI app to serve instead of a fresh one (the gateway and registry add routes).
    """

    def __init__(self, name: str, settings: FedbusSettings, app: FastAPI | None = None) -> None:
        self.name = name
        self.settings = settings
        self.app = app or FastAPI(title=f"fedbus {name}", docs_url=None, redoc_url=None)
        self._checks: dict[str, Callable[[], bool]] = {}
        self._stop = asyncio.Event()
        self.port: int | None = None
        self.started = asyncio.Event()
        """Set once the ops server listens (``port`` is then known)."""
        self._add_ops_routes()

    def add_readiness(self, name: str, check: Callable[[], bool]) -> None:
        """``/readyz`` answers 200 only while every registered check returns True."""
        self._checks[name] = check

    def request_stop(self) -> None:
        """Ask :meth:`run` to cancel its tasks and return."""
        self._stop.set()

    def _add_ops_routes(self) -> None:
        @self.app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"status": "ok", "service": self.name}

        @self.app.get("/readyz", include_in_schema=False)
        async def readyz(response: Response) -> dict[str, Any]:
            checks = {name: bool(check()) for name, check in self._checks.items()}
            ready = all(checks.values())
            response.status_code = 200 if ready else 503
            return {"ready": ready, "checks": checks}

        @self.app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def run(self, *tasks: Coroutine[Any, Any, None]) -> None:
        """Serve the ops endpoints and run ``tasks`` until SIGTERM/SIGINT or one task ends.

        A task that raises brings the whole process down (its supervisor restarts it) after
        the others are cancelled.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        config = uvicorn.Config(
            self.app,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_config=None,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        running = [asyncio.create_task(t) for t in tasks]
        running.append(asyncio.create_task(server.serve()))
        stopper = asyncio.create_task(self._stop.wait())
        await self._announce(server)
        UP.labels(self.name).set(1)
        try:
            done, _ = await asyncio.wait([*running, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            UP.labels(self.name).set(0)
            server.should_exit = True
            for task in [*running, stopper]:
                task.cancel()
            await asyncio.gather(*running, stopper, return_exceptions=True)
            log.info("%s stopped", self.name)

    async def _announce(self, server: uvicorn.Server) -> None:
        for _ in range(200):
            if server.started:
                sockets = [s for srv in server.servers for s in srv.sockets]
                self.port = int(sockets[0].getsockname()[1]) if sockets else None
                log.info("%s ops server on %s:%s", self.name, self.settings.http_host, self.port)
                self.started.set()
                return
            await asyncio.sleep(0.05)
