"""``python -m services.feed``."""
from services.feed.app import FeedService
from shared.runtime import run_service

if __name__ == "__main__":
    run_service("feed", FeedService, "Read Lighter's WebSocket and publish books, trades and account events to Redis.")
