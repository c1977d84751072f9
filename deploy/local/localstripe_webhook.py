"""Keep orders' webhook registered with localstripe during `make run`.

localstripe keeps webhooks in memory and starts empty (--from-scratch), so this
registers orders' endpoint as soon as localstripe answers and again every 30 s
(registration is idempotent by name). It runs for as long as `make run` does:
honcho stops everything when one process exits.
"""

from __future__ import annotations

import os
import time

import httpx

STRIPE = os.environ.get("SLUICE_ORDERS_STRIPE_API_BASE", "http://127.0.0.1:8420").rstrip("/")
ORDERS = os.environ.get("SLUICE_ORDERS_PUBLIC_URL", "http://127.0.0.1:8002").rstrip("/")


def main() -> None:
    secret = os.environ.get("SLUICE_ORDERS_STRIPE_WEBHOOK_SECRET", "")
    announced = False
    while True:
        try:
            httpx.post(f"{STRIPE}/_config/webhooks/sluice",
                       data={"url": f"{ORDERS}/v1/webhooks/stripe", "secret": secret},
                       timeout=5).raise_for_status()
            if not announced:
                print(f"localstripe will send webhooks to {ORDERS}/v1/webhooks/stripe", flush=True)
                announced = True
        except httpx.HTTPError:
            announced = False  # localstripe not up (yet, or again): try soon
            time.sleep(1)
            continue
        time.sleep(30)


if __name__ == "__main__":
    main()
