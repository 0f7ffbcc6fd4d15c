"""Thin Celery tasks: ids in, call pure code, record the outcome."""
