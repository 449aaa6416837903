"""Maker: two-sided post-only quotes around mid, volatility- and trend-aware (``core.MakerCore``)."""
