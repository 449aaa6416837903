"""Local Lighter-compatible venue (REST + WebSocket) for the lighter-bot market maker.

Pure core (markets, book, engine, ledger, txs, flow, core) + thin aiohttp shell (server, stream, admin).
"""
