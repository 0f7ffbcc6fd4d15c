"""create_app(): assembles routers, templates, static files and error handlers."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.lifespan import lifespan
from app.paths import ROOT
from app.web import body_limit, security_headers
from app.web.deps import Authorised
from app.web.errors import ERROR_RESPONSES, install_error_handlers
from app.web.routes import (
    api_account,
    api_chat,
    api_datasets,
    api_evaluations,
    api_exports,
    api_jobs,
    api_models,
    api_projects,
    docs,
    health,
    openai_api,
    pages_account,
    pages_auth,
    pages_chat,
    pages_datasets,
    pages_evaluations,
    pages_jobs,
    pages_models,
    pages_projects,
    pages_reviews,
    pages_versions,
)


def create_app() -> FastAPI:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = FastAPI(
        title="Tunelab",
        version="0.1.0",
        description="Fine-tune and serve LLMs with LoRA. JSON API and OpenAI-compatible API.",
        lifespan=lifespan,
        # /docs and /redoc come from app.web.routes.docs, with assets served locally.
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    # Public: health checks, the API docs, setup/login/logout and the language switch.
    public = (health, docs, pages_auth)
    for module in public:
        app.include_router(module.router)
    # Everything else: the current user (login session or API key; the local user with accounts
    # off) and the CSRF check, resolved once per request before the route's own dependencies.
    # The OpenAPI document declares the error statuses and their body on each of its routes.
    protected = (
        api_projects,
        api_chat,
        api_datasets,
        api_jobs,
        api_evaluations,
        api_exports,
        api_models,
        api_account,
        pages_projects,
        openai_api,
        pages_chat,
        pages_datasets,
        pages_jobs,
        pages_evaluations,
        pages_reviews,
        pages_models,
        pages_versions,
        pages_account,
    )
    for module in protected:
        app.include_router(module.router, dependencies=[Authorised], responses=ERROR_RESPONSES)
    install_error_handlers(app, [module.router for module in (*public, *protected)])
    body_limit.install(app)
    security_headers.install(app)  # last: it wraps the catch-all error handler
    return app
