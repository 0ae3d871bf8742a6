"""The platform's REST API (FastAPI; OpenAPI at ``/api/v1/openapi.json``), versioned under ``/api/v1``.

:func:`create_app` builds the app over one :class:`~sharedml.platform.service.Platform`;
routers: auth, users/settings/audit/nodes, projects/grants/datasets/approvals/models,
and the scheduler's job routes (``api/jobs.py``) when present. Every request
passes :class:`~sharedml.platform.api.limits.RequestLimits` (body size, JSON
depth) before routing and authentication. The web console
(``platform/console/``) is served under ``/console``, the offline docs at ``/api/v1/docs``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import FastAPI

from sharedml.platform.clock import Clock
from sharedml.platform.config import PlatformConfig
from sharedml.platform.service import Platform

log = logging.getLogger("sharedml.platform")


def create_app(
    settings: PlatformConfig,
    clock: Clock | None = None,
    platform: Platform | None = None,
    scheduler: Any = None,
) -> FastAPI:
    """The platform app; opens (and migrates) the store unless ``platform`` is given.

    ``app.state.platform`` is the :class:`Platform`; ``app.state.scheduler`` the
    job scheduler over the same store (built here unless given), wired to the
    approval gate, the audit log and the runtime settings (and, with ``settings.tee``, the
    TEE jobs of :mod:`sharedml.platform.tee_jobs`); ``app.state.metrics``
    serves ``/metrics``, ``/healthz`` and ``/readyz`` (:mod:`sharedml.platform.metrics`). Running its loop and
    the node service is the caller's part (``sharedml platform serve``).
    """
    from sharedml.platform.api import (
        errors,
        routes_admin,
        routes_auth,
        routes_data,
        routes_health,
        routes_registry,
    )
    from sharedml.platform.api.limits import RequestLimits
    from sharedml.platform.api.schemas import Problem
    from sharedml.platform.metrics import PlatformMetrics
    from sharedml.telemetry.access import read_token

    platform = platform or Platform.open(settings.data_dir, settings.db_url, clock)
    app = FastAPI(
        title="sharedml platform",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served offline by the console (console.DOCS_PATH)
        redoc_url=None,
    )
    app.state.platform = platform
    app.state.trusted_proxies = tuple(settings.trusted_proxies)
    app.state.scheduler = scheduler if scheduler is not None else build_scheduler(platform)
    if settings.tee is not None and app.state.scheduler.tee is None:
        from sharedml.platform.tee_jobs import TeeJobs

        app.state.scheduler.tee = TeeJobs.from_config(app.state.scheduler.book, settings.tee,
                                                      platform.data_dir, registry=platform.registry,
                                                      tls_dir=settings.pki_dir)
        platform.registry.sealed = app.state.scheduler.tee.shelf
    app.state.metrics = PlatformMetrics(app.state.scheduler)
    access = settings.metrics
    app.state.metrics_token = (None if access.token_file is None
                               else read_token(access.token_file, "the platform"))
    app.state.metrics_elsewhere = access.listen
    errors.install(app)
    app.add_middleware(RequestLimits)
    app.include_router(routes_health.router)
    problems: dict[int | str, dict[str, Any]] = {
        code: {"model": Problem, "description": text}
        for code, text in (
            (401, "not logged in, or the session expired"),
            (403, "the caller's role or grants do not allow this"),
            (404, "no such record"),
            (409, "clashes with the current state"),
        )
    }
    for router in (routes_auth.router, routes_admin.router, routes_data.router,
                   routes_registry.router):
        app.include_router(router, responses=problems)
    jobs = _job_routes()
    if jobs is not None:
        app.include_router(jobs.router, responses=problems)
        from sharedml.platform.api import tee_routes

        app.include_router(tee_routes.router, responses=problems)
    from sharedml.platform.console import mount

    mount(app)
    return app


def build_scheduler(platform: Platform) -> Any:
    """A Scheduler on the platform's store: approvals gate 8.3-1, audited, live settings."""
    from sharedml.platform.runtime import RuntimeSettings
    from sharedml.platform.scheduler import Scheduler

    scheduler = Scheduler.for_platform(platform)

    def apply(rs: RuntimeSettings) -> None:
        scheduler.config.task_timeout_s = rs.task_timeout_s
        scheduler.config.heartbeat_timeout_s = rs.heartbeat_timeout_s
        scheduler.config.max_attempts = rs.task_max_attempts

    platform.settings.subscribe(apply)
    return scheduler


def _job_routes() -> Any:
    """The scheduler's ``/api/v1/jobs`` router, if this build has it."""
    try:
        return importlib.import_module("sharedml.platform.api.jobs")
    except ModuleNotFoundError as exc:
        if exc.name != "sharedml.platform.api.jobs":
            raise
        log.warning("job routes (sharedml.platform.api.jobs) not present; /api/v1/jobs is off")
        return None
