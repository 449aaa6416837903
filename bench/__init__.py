"""``make bench``: end-to-end latency per hop and the venue's throughput."""
