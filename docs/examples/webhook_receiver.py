#!/usr/bin/env python3
"""A Quire webhook receiver that verifies the Standard Webhooks signature (standard library only).

    WEBHOOK_SECRET=whsec_... python3 webhook_receiver.py 8000     # listen on :8000
    python3 webhook_receiver.py --self-test                       # check against the spec vector
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

TOLERANCE_SECS = 5 * 60


def verify(secret: str, msg_id: str, timestamp: str, body: bytes, signatures: str) -> bool:
    """True when one of the space-separated `v1,<base64>` signatures is HMAC-SHA256 of
    `{webhook-id}.{webhook-timestamp}.{body}` under the secret's bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split(" "):
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    seen_ids: set = set()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        msg_id = self.headers.get("webhook-id", "")
        ts = self.headers.get("webhook-timestamp", "")
        sig = self.headers.get("webhook-signature", "")
        fresh = ts.isdigit() and abs(time.time() - int(ts)) <= TOLERANCE_SECS
        if not (fresh and verify(os.environ["WEBHOOK_SECRET"], msg_id, ts, body, sig)):
            self.send_response(401)
            self.end_headers()
            return
        if msg_id not in self.seen_ids:  # retries and redeliveries keep the webhook-id
            self.seen_ids.add(msg_id)
            event = json.loads(body)  # parse only after verifying the raw bytes
            print(event["type"], json.dumps(event["data"]), flush=True)
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        assert verify(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            b'{"test": 2432232314}',
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        )
        assert not verify(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265331",
            b'{"test": 2432232314}',
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        )
        print("ok")
    else:
        HTTPServer(("", int(sys.argv[1]) if len(sys.argv) > 1 else 8000), Handler).serve_forever()
