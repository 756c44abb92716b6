"""What every fedbus service process shares: start-up, the ops HTTP server, a graceful run.

A service's ``main.py`` opens a :class:`ServiceRuntime` (topics, PostgreSQL pool, producer),
builds its adapters and its dependency object on it, then runs its routing table:

>>> async with ServiceRuntime.open("aggregator", settings) as rt:
...     store = await PostgresRoundStore.create(rt.pool)
...     rt.watch("postgres", store.ping)
...     deps = Deps(store=store, ...)
...     await rt.run(HANDLERS, deps, group_id=settings.consumer_group, tasks=[deadlines()])

:class:`Service` alone serves ``/healthz``, ``/readyz`` and ``/metrics`` around any tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

import asyncpg
import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from fedbus.bus import (
    ConsumerRunner,
    EventProducer,
    IdempotencyStore,
    PostgresIdempotencyStore,
    Routes,
    ensure_topics,
)
from fedbus.bus.signing import KafkaKeyDirectory
from fedbus.bus.topics import catalog
from fedbus.events import load_topics
from fedbus.settings import FedbusSettings

__all__ = ["Service", "ServiceRuntime"]

D = TypeVar("D")

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
            # uvicorn would take the client address from X-Forwarded-For when the peer is
            # 127.0.0.1: any local caller could then pose as any address (and dodge per-address
            # limits). The peer's address counts; behind a proxy, the proxy's.
            proxy_headers=False,
            # h11, not httptools even when installed: with httptools a 50 MB body sent to the
            # gateway without a key was read in full before its 413 (test_gateway_edge).
            http="h11",
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


class ServiceRuntime:
    """The start-up every service shares: topics, a PostgreSQL pool, a producer, a consumer.

    Open it with :meth:`open`; everything it started is stopped, in reverse order, when the
    ``async with`` block ends.

    Attributes
    ----------
    name
        The service name (client id, ops server, logs).
    settings
        The service's settings.
    producer
        The started, idempotent producer (it signs with ``FEDBUS_SIGNING_KEY_FILE``).
    keys
        The published signing keys the consumer checks records against (None when neither
        root keys nor required signatures are configured).
    """

    def __init__(self, name: str, settings: FedbusSettings, producer: EventProducer) -> None:
        self.name = name
        self.settings = settings
        self.producer = producer
        self._pool: asyncpg.Pool | None = None
        self._checks: dict[str, Callable[[], bool]] = {}
        self._watchers: list[Coroutine[Any, Any, None]] = []
        self._closers = contextlib.AsyncExitStack()
        self.keys: KafkaKeyDirectory | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        name: str,
        settings: FedbusSettings,
        *,
        client_id: str | None = None,
        pool_size: int | None = 4,
        pool_options: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[ServiceRuntime]:
        """Create the topics, open the pool (``pool_size=None``: none), start the producer."""
        await ensure_topics(settings)
        async with contextlib.AsyncExitStack() as stack:
            pool: asyncpg.Pool | None = None
            if pool_size is not None:
                pool = await asyncpg.create_pool(
                    settings.postgres_dsn.get_secret_value(),
                    min_size=1,
                    max_size=pool_size,
                    **dict(pool_options or {}),
                )
                stack.push_async_callback(pool.close)
            producer = EventProducer(settings, client_id=client_id or name)
            await producer.start()
            stack.push_async_callback(producer.stop)
            keys: KafkaKeyDirectory | None = None
            if settings.root_public_keys.strip() or settings.signatures_required:
                keys = KafkaKeyDirectory(settings, catalog())
                await keys.start()
                stack.push_async_callback(keys.stop)
            runtime = cls(name, settings, producer)
            runtime._pool = pool
            runtime.keys = keys
            stack.push_async_callback(runtime._closers.aclose)
            yield runtime

    @property
    def pool(self) -> asyncpg.Pool:
        """The PostgreSQL pool (opened unless ``pool_size=None``)."""
        if self._pool is None:
            raise RuntimeError(f"{self.name} was opened without a PostgreSQL pool")
        return self._pool

    def on_close(self, closer: Callable[[], Awaitable[Any]]) -> None:
        """Run ``closer`` when the runtime closes (before the producer and the pool)."""
        self._closers.push_async_callback(closer)

    def add_readiness(self, name: str, check: Callable[[], bool]) -> None:
        """``/readyz`` answers 200 only while every check returns True."""
        self._checks[name] = check

    def watch(
        self, name: str, probe: Callable[[], Awaitable[bool]], *, every_s: float = 5.0
    ) -> None:
        """A readiness check kept up to date by awaiting ``probe`` every ``every_s`` seconds."""
        state = {name: True}
        self.add_readiness(name, lambda: state[name])

        async def loop() -> None:
            while True:
                await asyncio.sleep(every_s)
                state[name] = await probe()

        self._watchers.append(loop())

    async def run(
        self,
        routes: Routes[D],
        deps: D,
        *,
        group_id: str,
        tasks: Iterable[Coroutine[Any, Any, None]] = (),
        idempotency: IdempotencyStore | None = None,
        app: FastAPI | None = None,
        topics: Sequence[str] | None = None,
    ) -> None:
        """Consume ``routes`` with ``deps`` bound, serve ops (and ``app``) until SIGTERM.

        ``group_id`` is the consumer group; the event ids it handled go to PostgreSQL unless
        ``idempotency`` says otherwise. ``topics`` replaces the routed event types as the
        topics subscribed to (a trainer reads its own ``round.assigned.<client_id>``);
        without it the runner also reads every member of each topic family that carries a
        routed event (``upstream.job.requested.<tenant>`` for ``job.requested``).
        """
        families: list[str] = []
        if topics is None:
            found = load_topics().families_carrying(routes.topics)
            families = [f.name for f in found]
            topics = [t for t in routes.topics if t not in families]
        runner = ConsumerRunner(
            self.settings,
            group_id=group_id,
            handlers=routes.bind(deps),
            producer=self.producer,
            idempotency=idempotency or await PostgresIdempotencyStore.create(self.pool),
            topics=list(topics),
            families=families,
            keys=self.keys,
            require_signatures=self.settings.signatures_required,
        )
        service = Service(self.name, self.settings, app=app)
        consuming = False
        service.add_readiness("consumer", lambda: consuming)
        for name, check in self._checks.items():
            service.add_readiness(name, check)
        await runner.start()
        consuming = True
        log.info("%s consumes %s", self.name, ", ".join(runner.topics))
        try:
            await service.run(runner.run(), *self._watchers, *tasks)
        finally:
            consuming = False
            await runner.stop()
