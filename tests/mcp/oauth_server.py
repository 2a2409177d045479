"""A small OAuth 2.1 authorization server for the gateway's tests, over
https with a test CA: RFC 8414 metadata, the client_credentials grant
(client_secret_basic or _post) honouring RFC 8707's `resource` as the
token's audience, JWT access tokens (RFC 9068) signed with real RSA keys by
PyJWT, and a JWKS whose keys the test can rotate. It also mints tokens
directly, good or deliberately wrong, for the refusal tests."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


class AuthorizationServer:
    """Serves until `stop`; `issuer` is its https URL."""

    def __init__(self, cert: Path, key: Path, clients: dict[str, str]) -> None:
        self.clients = clients
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotate()
        self.tokens_issued = 0
        self.jwks_fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/.well-known/oauth-authorization-server":
                    self.answer(200, server.metadata())
                elif self.path == "/jwks":
                    server.jwks_fetches += 1
                    self.answer(200, server.jwks())
                else:
                    self.answer(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path == "/authorize":
                    self.answer(400, {"error": "unsupported_response_type"})
                    return
                if self.path != "/token":
                    self.answer(404, {"error": "not_found"})
                    return
                client_id, secret = form.get("client_id"), form.get("client_secret")
                basic = self.headers.get("authorization", "")
                if basic.startswith("Basic "):
                    decoded = base64.b64decode(basic[6:]).decode()
                    client_id, _, secret = decoded.partition(":")
                if client_id is None or server.clients.get(client_id) != secret:
                    self.answer(401, {"error": "invalid_client"})
                    return
                if form.get("grant_type") != "client_credentials" or "resource" not in form:
                    self.answer(400, {"error": "invalid_request"})
                    return
                scope = form.get("scope", "")
                token = server.token(client_id, form["resource"], scope=scope)
                server.tokens_issued += 1
                self.answer(
                    200,
                    {
                        "access_token": token,
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "scope": scope,
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.issuer = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def rotate(self) -> str:
        """A new signing key, published beside none of the old ones: its kid."""
        kid = uuid.uuid4().hex[:16]
        self.keys = [(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))]
        return kid

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["code"],
        }

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(
        self,
        client_id: str,
        audience: str,
        *,
        scope: str = "mcp:tools",
        issuer: str | None = None,
        lifetime: int = 300,
        kid: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        algorithm: str = "RS256",
        **claims: Any,
    ) -> str:
        """An access token as this server issues them; the keywords make it wrong."""
        now = int(time.time())
        body = {
            "iss": issuer or self.issuer,
            "sub": client_id,
            "client_id": client_id,
            "aud": audience,
            "scope": scope,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        current_kid, current_key = self.keys[0]
        headers = {"kid": kid or current_kid, "typ": "at+jwt"}
        if algorithm == "none":
            return jwt.encode(body, "", algorithm="none", headers=headers)
        if algorithm.startswith("HS"):
            return jwt.encode(
                body,
                "a shared secret the gateway must never accept",
                algorithm=algorithm,
                headers=headers,
            )
        return jwt.encode(body, key or current_key, algorithm=algorithm, headers=headers)
