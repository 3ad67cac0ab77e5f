"""``tillpay bench``: pays per second over loopback, with this machine's limits measured in the same run.

``run.py`` drives one benchmark: a fresh database (``data.py``), prepared signed requests
(``requests.py``), ``tillpay serve`` processes, a load generator that is not the bottleneck
(``loadgen.py``: wrk with a Lua script, or an asyncio client in its own process), and the limits
(``limits.py``: RSA-2048 signatures, a signed no-op endpoint on the same stack, the database's raw rate
for a pay's statements). ``report.py`` writes the results as Markdown and JSON.
"""
