"""Compatibility names from the user's notes; the real code lives in ``services/``."""
