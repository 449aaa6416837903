"""Risk guard: the last word on every order intent (rules in ``core.py``, I/O in ``app.py``)."""
