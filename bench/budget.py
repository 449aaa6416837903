"""Sustainable two-sided requotes per minute on each account tier, from the venue's limits (pure).

Lighter's standard tier (the user's: premium is not enabled) allows 60 REST requests a minute,
reads included, and the venue also models a 60 tx/min bucket in which each tx of a batch counts.
Premium has 24 000 weighted REST units a minute, 4 000 tx/min, and the volume quota (a create or a
modify consumes one; cancels none). The bot's fixed load is the periodic reconcile (four reads)
and the dead-man's re-arm (one tx); everything else is requotes. A requote is one ``sendTxBatch``
of two ``ModifyOrder`` (both quotes live) or of cancel + place per side (four txs).
"""
from __future__ import annotations

from services.venue.ledger import TIERS
from services.venue.limits import DEFAULT_WEIGHT, WEIGHTS

RECONCILE_READS = ("accountActiveOrders", "accountInactiveOrders", "trades", "account")


def budget(reconcile_s: float = 30.0, rearm_s: float = 60.0) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    reconciles = 60.0 / reconcile_s
    rearms = 60.0 / rearm_s
    for name, tier in TIERS.items():
        def weight(endpoint: str) -> int:
            return 1 if tier.rest_unweighted else WEIGHTS.get(endpoint, DEFAULT_WEIGHT)
        fixed_rest = reconciles * sum(weight(e) for e in RECONCILE_READS) + rearms * weight("sendTx")
        by_rest = (tier.rest_weight_per_min - fixed_rest) / weight("sendTxBatch")
        for kind, txs, quota in (("2 modifies", 2, 2), ("cancel + place x2", 4, 2)):
            by_tx = (tier.tx_per_min - rearms) / txs
            rows.append({"tier": name, "requote": kind, "rest_limit_per_min": int(by_rest),
                         "tx_limit_per_min": int(by_tx), "sustainable_per_min": int(min(by_rest, by_tx)),
                         "quota_per_requote": quota if tier.volume_quota else 0,
                         "fixed_load": f"{reconciles * len(RECONCILE_READS):g} reads + {rearms:g} tx a minute"})
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| tier | requote | by REST limit | by tx limit | sustainable / min | volume quota per requote |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['tier']} | {r['requote']} | {r['rest_limit_per_min']} | {r['tx_limit_per_min']} | "
                     f"**{r['sustainable_per_min']}** | {r['quota_per_requote']} |")
    return "\n".join(lines)
