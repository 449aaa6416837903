"""Local orchestration of the whole system (the user's ``core/main.py``)."""
