"""AWS EC2 instance metadata service (IMDSv2) emulator.

Documented flow (docs.aws.amazon.com, "Use IMDSv2"):

1. ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds: 1..21600``
   → the token as text (400 without/with a bad TTL; 403 when the PUT carries
   ``X-Forwarded-For``, which IMDS refuses).
2. ``GET /latest/meta-data/<path>`` with ``X-aws-ec2-metadata-token: <token>``
   → the value as text. With ``tokens_required=True`` (the default, like an instance
   set to "IMDSv2 required") a GET without a valid token answers 401.

Served paths: ``local-ipv4``, ``local-hostname``, ``instance-id``, ``ipv6`` (when set);
``/latest/meta-data/`` lists them.
"""

from __future__ import annotations

import secrets
import time

from beamfleet_lab.emulators.base import MetadataEmulator, Request, Response, not_found


class AwsImdsEmulator(MetadataEmulator):
    provider = "aws"

    def __init__(
        self,
        local_ipv4: str = "10.230.10.5",
        *,
        ipv6: str | None = None,
        tokens_required: bool = True,
    ) -> None:
        super().__init__()
        self.local_ipv4 = local_ipv4
        self.ipv6 = ipv6
        self.tokens_required = tokens_required
        self._tokens: dict[str, float] = {}

    @property
    def issued_tokens(self) -> list[str]:
        """Tokens handed out so far, oldest first (tests check the GET presents the last)."""
        with self._lock:
            return list(self._tokens)

    def _data(self) -> dict[str, str]:
        data = {
            "local-ipv4": self.local_ipv4,
            "local-hostname": "ip-emulated.ec2.internal",
            "instance-id": "i-0123456789abcdef0",
        }
        if self.ipv6:
            data["ipv6"] = self.ipv6
        return data

    def respond(self, request: Request) -> Response:
        if request.path == "/latest/api/token":
            if request.method != "PUT":
                return Response(405, "Method Not Allowed\n")
            if request.header("x-forwarded-for") is not None:
                return Response(403, "Forbidden\n")
            ttl = request.header("x-aws-ec2-metadata-token-ttl-seconds") or ""
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return Response(400, "Bad Request\n")
            token = secrets.token_urlsafe(32)
            with self._lock:
                self._tokens[token] = time.monotonic() + int(ttl)
            return Response(200, token, headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl})
        if not request.path.startswith("/latest/meta-data"):
            return not_found()
        presented = request.header("x-aws-ec2-metadata-token")
        with self._lock:
            expiry = self._tokens.get(presented or "")
        if presented is not None and (expiry is None or expiry < time.monotonic()):
            return Response(401, "Unauthorized\n")
        if presented is None and self.tokens_required:
            return Response(401, "Unauthorized\n")
        key = request.path[len("/latest/meta-data") :].strip("/")
        data = self._data()
        if not key:
            return Response(200, "\n".join(sorted(data)))
        return Response(200, data[key]) if key in data else not_found()
