"""Common library for the lighter-bot services: config, schemas, Redis keys, bus, runtime."""
