from shared.runtime import run_service

from services.notifier.app import build

run_service("notifier", build, "Send trading-state changes and Alertmanager alerts to the operator's chat ($NOTIFY_URL).")
