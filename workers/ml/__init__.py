"""Model code that runs in Celery workers only: device choice, loading, chat formatting.

Importing this package is cheap: torch and transformers are imported only by the submodules
that need them (device, loading, model_cache, hub), never here.
"""
