"""Send pay requests from this process at one moment, on several threads; print the results as JSON.

Run by the concurrency tests from several processes at once:
    python fire_pays.py CREDENTIALS_JSON START_UNIX THREADS ORDER_PREFIX_OR_SAME CODE
"""

from __future__ import annotations

import json
import sys
import threading
import time

from tillpay.client import MapiClient


def main() -> None:
    creds = json.loads(sys.argv[1])
    start = float(sys.argv[2])
    threads = int(sys.argv[3])
    order = sys.argv[4]
    code = sys.argv[5]
    results: list[dict[str, str | None]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        client = MapiClient(
            creds["url"], creds["partner"], sign_type="MD5", md5_key=creds["md5_key"], timeout=60
        )
        ptid = order if order.startswith("SAME") else f"{order}-{i}-{threading.get_ident()}"
        while time.time() < start:
            time.sleep(0.001)
        try:
            r = client.pay(ptid, code, "10.00", creds["currency"], "race")
            out = {"result_code": r.result_code, "error": r.error, "status": r.status, "trade_no": r.trade_no}
        except Exception as e:  # reported, never swallowed: the test fails on it
            out = {"exception": repr(e)}
        with lock:
            results.append(out)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
