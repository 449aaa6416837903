"""Feed: Lighter WebSocket -> normalised Redis streams (books, trades, our account)."""
