"""The strategy lab: the cores that trade, run in simulated time (backtests, sweeps, exact replay)."""
