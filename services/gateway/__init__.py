"""Gateway: approved intents -> signed Lighter txs; the sole holder of the API private key."""
