from shared.runtime import run_service

from services.hedger.app import build

run_service("hedger", build, "Hedge the position back toward hedger.target_units (passive first, then IOC).")
