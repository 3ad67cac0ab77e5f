"""Alipay's global heartbeat (``/monitor/api/heartbeat/isv``): JSON with a salted SHA-256 ``digest``."""
