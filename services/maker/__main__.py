from shared.runtime import run_service

from services.maker.app import build

run_service("maker", build, "Quote both sides of the active market (post-only, volatility- and trend-aware).")
