"""Trading-quality analytics: the market-making metrics of ``metrics.md``, computed from our streams."""
