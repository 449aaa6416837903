"""``python -m services.gateway``: the only process that holds the API key and writes to the venue."""
from shared.runtime import run_service

from .app import Gateway

if __name__ == "__main__":
    run_service("gateway", Gateway, "Sign approved order intents and send them to Lighter; cancel everything on kill, start and stop.")
