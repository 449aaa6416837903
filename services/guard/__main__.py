"""``python -m services.guard``: the risk guard (see services/guard/core.py for the rules)."""
from shared.runtime import run_service

from services.guard.app import build

if __name__ == "__main__":
    run_service("guard", build, "Risk guard: approves or vetoes every order intent and trips risk:kill on a limit breach")
