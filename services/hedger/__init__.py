"""Hedger: brings the position back toward ``hedger.target_units`` in clips (``core.HedgerCore``)."""
