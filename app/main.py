"""create_app(): assembles routers, templates, static files and error handlers."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.paths import ROOT
from app.web.errors import install_error_handlers
from app.web.routes import (
    api_datasets,
    api_models,
    api_projects,
    health,
    pages_datasets,
    pages_models,
    pages_projects,
)


def create_app() -> FastAPI:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = FastAPI(
        title="Tunelab",
        version="0.1.0",
        description="Fine-tune and serve LLMs with LoRA. JSON API and OpenAI-compatible API.",
    )
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    for module in (
        health,
        api_projects,
        api_datasets,
        api_models,
        pages_projects,
        pages_datasets,
        pages_models,
    ):
        app.include_router(module.router)
    install_error_handlers(app)
    return app
