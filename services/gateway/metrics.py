"""Prometheus metrics of the gateway (never labelled with anything secret)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ORDERS = Counter("mm_orders_total", "Intents and gateway txs by action and outcome "
                 "(ack, reject, not_sent, unknown, resolved, stale, killed)", ["action", "outcome"])
SUBMIT_LATENCY = Histogram("mm_order_submit_latency_seconds", "Sign + sendTx round trip",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
NONCE_RESYNCS = Counter("mm_nonce_resyncs_total", "Nonce re-fetches from /api/v1/nextNonce after the first")
RATE_LIMITED = Counter("mm_gateway_rate_limited_total", "sendTx/sendTxBatch requests the venue refused with 429 "
                       "(the tier's request budget; the batch is retried, one tx at a time by risk)")
REJECTS = Counter("mm_rejects_total", "Venue rejections by Lighter code", ["code"])
MALFORMED = Counter("mm_gateway_malformed_total", "Unreadable inputs (stream entries of the wrong type, venue answers)",
                    ["source"])
KILL_ACTIVE = Gauge("mm_gateway_kill_active", "1 while places are refused (kill set, unreadable or stopping)")
OPEN_TRACKED = Gauge("mm_gateway_open_orders_tracked", "Orders placed by this run not yet reported terminal")
IN_DOUBT = Gauge("mm_gateway_txs_in_doubt", "Txs whose outcome is unknown (their lane sends nothing else until settled)")
BATCH_SIZE = Histogram("mm_gateway_batch_txs", "Txs per sendTx/sendTxBatch request", buckets=(1, 2, 3, 4, 6, 8, 10, 15))
VOLUME_QUOTA = Gauge("mm_gateway_volume_quota_remaining", "The venue's volume_quota_remaining in its last sendTx answer "
                     "(premium accounts; absent until the venue said)")
