"""`tollgate mcp http --oauth`: the gateway as an OAuth 2.1 resource server
(MCP authorization, RFC 9728, RFC 8707, RFC 9068) in front of the reference
server-everything, with the test's own authorization server
(oauth_server.py: https with a test CA, real RSA keys, a JWKS it rotates).
The official Python SDK's OAuth client follows the 401 to the metadata, the
authorization server and a token; tokens that are wrong in each way the
specifications name are refused; callers' tokens keep working beside."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from conftest import BIN, Gate, free_port, wait_for_port
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from oauth_server import AuthorizationServer
from test_http import connect, tls_files
from test_stdio import decision, proofcheck, text

SECRET = "s3cret-of-agent-app"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "oauth-test", "version": "1"},
    },
}


@dataclass
class OAuthGateway:
    """A running `tollgate mcp http --oauth` and its authorization server."""

    url: str
    auth: AuthorizationServer
    ca: Path
    process: subprocess.Popen[bytes]
    #: How the gateway's own caller (demo) authenticates to the gate.
    via: str


@pytest.fixture(params=["token", "in_process"])
def oauth_gateway(
    gate: Gate, everything_http: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OAuthGateway]:
    """The gateway asking the gate at its URL as the demo caller's token, or
    running it in its own process (`--data-dir`, `--caller demo`)."""
    ca, cert, key = tls_files(tmp_path)
    auth = AuthorizationServer(cert, key, {"agent-app": SECRET, "stranger": "x"})
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    config = tmp_path / "oauth.toml"
    config.write_text(
        f'issuer = "{auth.issuer}"\nresource = "{url}"\nca_file = "{ca}"\n'
        'scopes = ["mcp:tools"]\njwks_min_refetch_seconds = 1\n'
        '[[principal]]\nclient_id = "agent-app"\nactors = ["agent-mcp"]\n'
    )
    if request.param == "token":
        asks = ["--url", gate.url, "--log-key", gate.log_key, "--gate-key", gate.gate_key,
                "--token-file", str(gate.token_file)]  # fmt: skip
    else:
        gate.process.terminate()
        assert gate.process.wait(timeout=30) == 0
        asks = ["--data-dir", str(gate.token_file.parent), "--caller", "demo"]
    process = subprocess.Popen(
        [
            str(BIN / "tollgate"), "mcp", "http", "--server", "everything",
            "--upstream", everything_http, "--listen", f"127.0.0.1:{port}",
            "--oauth", str(config), *asks,
        ],
        env=dict(os.environ, TOLLGATE_LOG="warn"),
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(port, process)
    yield OAuthGateway(url, auth, ca, process, request.param)
    process.kill()
    process.wait()
    auth.stop()


class Storage:
    """The OAuth client's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def receipt_body(d: dict[str, Any]) -> dict[str, Any]:
    """The signed receipt's JSON (the note's text)."""
    body: dict[str, Any] = json.loads(d["receipt"].split("\n\n", 1)[0])
    return body


def test_an_oauth_client_follows_the_challenge_and_is_decided_for_on_its_behalf(
    gate: Gate, oauth_gateway: OAuthGateway, tmp_path: Path
) -> None:
    g = oauth_gateway
    provider = ClientCredentialsOAuthProvider(
        server_url=g.url,
        storage=Storage(),
        client_id="agent-app",
        client_secret=SECRET,
        scope="mcp:tools",
        issuer=g.auth.issuer,
    )
    verify = ssl.create_default_context(cafile=g.ca)

    async def run() -> None:
        http = httpx2.AsyncClient(auth=provider, verify=verify, timeout=30)
        async with http, Client(streamable_http_client(g.url, http_client=http)) as client:
            result = await client.call_tool("echo", {"message": "as an OAuth client"})
            assert not result.is_error, text(result)
            d = decision(result)
            assert d["decision"] == "PERMIT"
            proofcheck(gate, d, tmp_path)
            caller = receipt_body(d)["derived"]["caller"]
            assert caller == {
                "name": "demo",
                "via": g.via,
                "on_behalf_of": {
                    "via": "oauth",
                    "issuer": g.auth.issuer,
                    "subject": "agent-app",
                    "client": "agent-app",
                },
            }
        # A caller's own token keeps working beside OAuth.
        async with connect(g.url, gate.token_file.read_text().strip(), "legacy", **{
            "Tollgate-Actor": "agent-mcp"
        }) as client:  # fmt: skip
            result = await client.call_tool("echo", {"message": "as a caller"})
            d = decision(result)
            assert d["decision"] == "PERMIT"
            assert receipt_body(d)["derived"]["caller"] == {"name": "demo", "via": g.via}

    anyio.run(run)
    assert g.auth.tokens_issued == 1


def test_tokens_that_are_not_for_this_resource_are_refused(oauth_gateway: OAuthGateway) -> None:
    g = oauth_gateway
    metadata_url = g.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")

    def post(token: str | None) -> httpx.Response:
        headers = {"accept": "application/json, text/event-stream"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return httpx.post(g.url, json=INITIALIZE, headers=headers, timeout=30)

    def refused(r: httpx.Response, status: int, error: str) -> str:
        assert r.status_code == status, (r.status_code, r.text)
        challenge = r.headers["www-authenticate"]
        assert f'error="{error}"' in challenge, challenge
        assert f'resource_metadata="{metadata_url}"' in challenge, challenge
        return challenge

    # No token: the challenge names the metadata and the scope (RFC 9728 §5.1).
    r = post(None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{metadata_url}", scope="mcp:tools"'
    )
    for at in (metadata_url, g.url.replace("/mcp", "/.well-known/oauth-protected-resource")):
        metadata = httpx.get(at).json()
        assert metadata["resource"] == g.url
        assert metadata["authorization_servers"] == [g.auth.issuer]
        assert metadata["scopes_supported"] == ["mcp:tools"]

    a = g.auth
    assert post(a.token("agent-app", g.url)).status_code == 200
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = a.token
    wrong = {  # each with the reason the gateway gives
        "InvalidAudience": token("agent-app", "http://127.0.0.1:1/mcp"),
        "ExpiredSignature": token("agent-app", g.url, lifetime=-120),  # past the 30 s leeway
        "ImmatureSignature": token("agent-app", g.url, nbf=int(time.time()) + 600),
        "InvalidIssuer": token("agent-app", g.url, issuer="https://evil.example"),
        'key "not-a-key" is not among': token("agent-app", g.url, kid="not-a-key"),
        "unknown variant `none`": token("agent-app", g.url, algorithm="none"),
        "algorithm HS256 is not accepted": token("agent-app", g.url, algorithm="HS256"),
        "InvalidSignature": token("agent-app", g.url, key=stranger),
    }
    wrong["InvalidSignature "] = token("agent-app", g.url).rsplit(".", 1)[0] + "."
    for why, bad in wrong.items():
        r = post(bad)
        refused(r, 401, "invalid_token")
        assert why.strip() in r.json()["error"]["message"], (why, r.text)

    # Step-up: a valid token without the scope is 403 insufficient_scope.
    challenge = refused(post(a.token("agent-app", g.url, scope="other")), 403, "insufficient_scope")
    assert 'scope="mcp:tools"' in challenge
    # Valid, but no [[principal]] is it.
    r = post(a.token("stranger", g.url))
    assert r.status_code == 403 and "no [[principal]]" in r.text, r.text
    # An actor its rule does not name.
    r = httpx.post(
        g.url,
        json=INITIALIZE,
        headers={
            "accept": "application/json, text/event-stream",
            "authorization": f"Bearer {a.token('agent-app', g.url)}",
            "tollgate-actor": "agent-other",
        },
    )
    assert r.status_code == 403 and "may speak for" in r.text, r.text

    # Rotation: a token of the new key is taken (the set fetched again for
    # its unknown kid), the old key's no more.
    old = a.token("agent-app", g.url)
    time.sleep(1.1)
    a.rotate()
    fetches = a.jwks_fetches
    assert post(a.token("agent-app", g.url)).status_code == 200
    assert a.jwks_fetches == fetches + 1
    refused(post(old), 401, "invalid_token")
