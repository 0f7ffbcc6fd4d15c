"""ML tests use the session fixtures `tiny_model_dir` and `tiny_tokenizer` of tests/conftest.py."""
