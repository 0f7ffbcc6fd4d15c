"""Scoring a model's answers on a test set: perplexity, BLEU-4, ROUGE. Pure ML, no queue,
database or web imports; `metrics` holds the formulas and the description of each method.
"""
