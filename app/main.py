"""create_app(): assembles routers, templates, static files and error handlers."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.lifespan import lifespan
from app.paths import ROOT
from app.web.errors import install_error_handlers
from app.web.routes import (
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
    for module in (
        health,
        docs,
        api_projects,
        api_chat,
        api_datasets,
        api_jobs,
        api_evaluations,
        api_exports,
        api_models,
        pages_projects,
        openai_api,
        pages_chat,
        pages_datasets,
        pages_jobs,
        pages_evaluations,
        pages_reviews,
        pages_models,
        pages_versions,
    ):
        app.include_router(module.router)
    install_error_handlers(app)
    return app
