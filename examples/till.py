"""A till calling the pointsbot till API: look a member up, book a purchase, return part of it.

Standard library only. Issue a key with `pointsbot api-keys create --store NAME`, then:

    POINTSBOT_API_KEY=pk_... POINTSBOT_API_SECRET=... \\
        python examples/till.py 1173489681 [--url http://127.0.0.1:8080]

Every request is signed (README, "The till API"): hex HMAC-SHA256 with the key's secret over
METHOD, PATH, TIMESTAMP, NONCE and the SHA-256 of the body, one per line.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """The request's signature: hex HMAC-SHA256 over its method, path, timestamp, nonce and
    the hex SHA-256 of its body."""
    text = f"{method}\n{path}\n{timestamp}\n{nonce}\n{hashlib.sha256(body).hexdigest()}"
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def signed_headers(
    key_id: str, secret: str, method: str, path: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The four signature headers of a request, with a fresh nonce."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(16)
    return {
        "X-Pointsbot-Key": key_id,
        "X-Pointsbot-Timestamp": timestamp,
        "X-Pointsbot-Nonce": nonce,
        "X-Pointsbot-Signature": sign(secret, method, path, timestamp, nonce, body),
    }


class Till:
    """A store's till: the API's address and the store's key."""

    def __init__(self, url: str, key_id: str, secret: str) -> None:
        self.url = url.rstrip("/")
        self.key_id = key_id
        self.secret = secret

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """Send one signed request; return (status, JSON answer), refusals included."""
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = signed_headers(self.key_id, self.secret, method, path, body)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's API address
            self.url + path, data=body or None, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read() or b"{}")


def main(argv: list[str] | None = None) -> int:
    """Look the member up, book a 128.00 purchase and return 28.00 of it; print each answer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("member_code", help="a member's code (/card shows it)")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the API's address")
    args = parser.parse_args(argv)
    key_id, secret = os.environ.get("POINTSBOT_API_KEY"), os.environ.get("POINTSBOT_API_SECRET")
    if not key_id or not secret:
        print("set POINTSBOT_API_KEY and POINTSBOT_API_SECRET (pointsbot api-keys create)")
        return 2
    till = Till(args.url, key_id, secret)
    receipt = f"T{int(time.time())}{secrets.token_hex(2)}"
    steps: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/v1/members/{args.member_code}", None),
        (
            "POST",
            "/v1/purchases",
            {"receipt": receipt, "member_code": args.member_code, "amount": "128.00"},
        ),
        (
            "POST",
            "/v1/purchase-returns",
            {"receipt": receipt, "return_id": f"{receipt}-R1", "amount": "28.00"},
        ),
    ]
    for method, path, payload in steps:
        status, answer = till.call(method, path, payload)
        print(f"{method} {path} -> {status}")
        print(json.dumps(answer, ensure_ascii=False, indent=2))
        if status >= 400:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
