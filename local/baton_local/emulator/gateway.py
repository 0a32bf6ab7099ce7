"""API Gateway REST APIs on loopback: each ``AWS::Serverless::Api`` gets a
ThreadingHTTPServer on 127.0.0.1 that turns requests into proxy events (payload 1.0),
routed by the API's paths (OpenAPI ``DefinitionBody`` and the functions' ``Api``
events), and turns the function's answer back into the HTTP response. What API Gateway
answers itself (no route, a failed function, a request to an ``AWS_IAM`` route that is
not signed by a local caller: ``sigv4``) is rendered through the API's
``GatewayResponses`` templates when it has them, else as ``{"message": ...}``."""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from baton_local.emulator.lambdas import Invocation, PoolStopped
from baton_local.emulator.sigv4 import IamCaller, Refusal, verify
from baton_local.emulator.template import ACCOUNT_ID, PortInUse

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
ANY = "ANY"
AWS_IAM = "AWS_IAM"

Invoke = Callable[[str, dict[str, Any], str, Callable[[Invocation], str]], Invocation]
"""(function logical id, event, source description, how to word its outcome) -> the
finished invocation."""


@dataclass
class Route:
    """One method of one resource path, and the function it reaches (or why none)."""

    method: str
    resource: str
    function: str | None
    problem: str | None = None
    authorization: str = "NONE"
    """``AWS_IAM``: API Gateway checks the SigV4 signature before the function runs."""
    regex: re.Pattern[str] = field(init=False)
    names: list[str] = field(init=False)
    rank: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        names: list[str] = []
        parts: list[str] = []
        greedy = params = 0
        for segment in self.resource.strip("/").split("/") if self.resource != "/" else []:
            match = re.fullmatch(r"\{([^}+]+)(\+?)\}", segment)
            if match is None:
                parts.append(re.escape(segment))
                continue
            names.append(match.group(1))
            if match.group(2):
                greedy += 1
                parts.append(f"(?P<p{len(names) - 1}>.+)")
            else:
                params += 1
                parts.append(f"(?P<p{len(names) - 1}>[^/]+)")
        self.regex = re.compile("^/" + "/".join(parts) + "/?$")
        self.names = names
        self.rank = (greedy, params, -len(parts))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        return {name: unquote(found.group(f"p{n}")) for n, name in enumerate(self.names)}


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class RestApi:
    """One REST API stage, served on its own loopback port (bound at construction, so its
    URL is known before the functions' environments are resolved)."""

    def __init__(
        self,
        logical_id: str,
        api_id: str,
        stage: str,
        region: str,
        invoke: Invoke,
        *,
        port: int = 0,
    ) -> None:
        self.logical_id = logical_id
        self.api_id = api_id
        self.stage = stage
        self.region = region
        self.invoke = invoke
        self.routes: list[Route] = []
        self.stage_variables: dict[str, str] = {}
        self.binary_media_types: list[str] = []
        self.gateway_responses: dict[str, Any] = {}
        self.callers: dict[str, IamCaller] = {}
        """Access key id -> the principal it stands for, for ``AWS_IAM`` routes."""
        self.requests = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                api.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = api.handle(
                    self.command,
                    self.path,
                    [(name, value) for name, value in self.headers.items()],
                    body,
                    self.client_address[0],
                )
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.body)

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def do_PUT(self) -> None:
                self._serve()

            def do_PATCH(self) -> None:
                self._serve()

            def do_DELETE(self) -> None:
                self._serve()

            def do_HEAD(self) -> None:
                self._serve()

            def do_OPTIONS(self) -> None:
                self._serve()

            def log_message(self, *args: Any) -> None:
                pass

        try:
            self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise PortInUse(f"{logical_id}: port {port} is not free ({exc.strerror})") from None
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def local_root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.local_root}/{self.stage}"

    @property
    def public_host(self) -> str:
        return f"{self.api_id}.execute-api.{self.region}.amazonaws.com"

    def add_route(self, route: Route) -> None:
        self.routes.append(route)
        self.routes.sort(key=lambda r: r.rank)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"api-{self.logical_id}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
        self.server.server_close()

    # -- one request -------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
    ) -> Answer:
        request_id = str(uuid.uuid4())
        url = urlsplit(target)
        raw_path = url.path
        prefix = f"/{self.stage}"
        if raw_path != prefix and not raw_path.startswith(prefix + "/"):
            return self._gateway_answer(
                404,
                "RESOURCE_NOT_FOUND",
                f"No stage in {raw_path} (this API's stage is {self.stage})",
                request_id,
            )
        path = unquote(raw_path[len(prefix) :]) or "/"
        route, parameters = self._route(method, path)
        if route is None:
            return self._gateway_answer(
                404, "RESOURCE_NOT_FOUND", f"No route for {method} {path}", request_id
            )
        if route.function is None:
            return self._gateway_answer(
                500, "API_CONFIGURATION_ERROR", route.problem or "", request_id
            )
        caller: IamCaller | None = None
        if route.authorization == AWS_IAM:
            checked = verify(
                method, target, headers, body, region=self.region, callers=self.callers
            )
            if isinstance(checked, Refusal):
                return self._gateway_answer(403, checked.response_type, checked.message, request_id)
            caller = checked
        event = self._event(
            method=method,
            path=path,
            query=url.query,
            route=route,
            parameters=parameters or {},
            headers=headers,
            body=body,
            source_ip=source_ip,
            request_id=request_id,
            caller=caller,
        )
        answers: list[Answer] = []

        def answer_of(invocation: Invocation) -> str:
            answers.append(self._answer(invocation, request_id))
            return f"-> {answers[0].status}"

        try:
            self.invoke(route.function, event, f"{method} {raw_path}", answer_of)
        except PoolStopped:
            return self._gateway_answer(503, "DEFAULT_5XX", "Service Unavailable", request_id)
        return answers[0]

    def _answer(self, invocation: Invocation, request_id: str) -> Answer:
        """What API Gateway makes of the function's answer."""
        if not invocation.ok:
            if invocation.error and invocation.error.get("errorType") == "Sandbox.Timedout":
                return self._gateway_answer(
                    504, "INTEGRATION_TIMEOUT", "Endpoint request timed out", request_id
                )
            return self._gateway_answer(
                502, "INTEGRATION_FAILURE", "Internal server error", request_id
            )
        return self._proxy_answer(invocation.result, request_id)

    def _route(self, method: str, path: str) -> tuple[Route | None, dict[str, str] | None]:
        for route in self.routes:
            if route.method not in (method, ANY):
                continue
            parameters = route.match(path)
            if parameters is not None:
                return route, parameters
        return None, None

    def _event(
        self,
        *,
        method: str,
        path: str,
        query: str,
        route: Route,
        parameters: dict[str, str],
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        request_id: str,
        caller: IamCaller | None = None,
    ) -> dict[str, Any]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            single[name] = value
            multi.setdefault(name, []).append(value)
        query_single: dict[str, str] = {}
        query_multi: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            query_single[name] = value
            query_multi.setdefault(name, []).append(value)
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        text: str | None = None
        encoded = False
        if body:
            if self._is_binary(content_type):
                text, encoded = base64.b64encode(body).decode(), True
            else:
                try:
                    text = body.decode()
                except UnicodeDecodeError:
                    text, encoded = base64.b64encode(body).decode(), True
        now = datetime.now(UTC)
        user_agent = next((v for k, v in headers if k.lower() == "user-agent"), None)
        return {
            "resource": route.resource,
            "path": path,
            "httpMethod": method,
            "headers": single or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": query_single or None,
            "multiValueQueryStringParameters": query_multi or None,
            "pathParameters": parameters or None,
            "stageVariables": dict(self.stage_variables) or None,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": self.api_id,
                "domainName": self.public_host,
                "domainPrefix": self.api_id,
                "extendedRequestId": secrets.token_urlsafe(12),
                "httpMethod": method,
                "identity": caller.identity(source_ip, user_agent)
                if caller is not None
                else {
                    "accessKey": None,
                    "accountId": None,
                    "caller": None,
                    "cognitoAuthenticationProvider": None,
                    "cognitoAuthenticationType": None,
                    "cognitoIdentityId": None,
                    "cognitoIdentityPoolId": None,
                    "principalOrgId": None,
                    "sourceIp": source_ip,
                    "user": None,
                    "userAgent": user_agent,
                    "userArn": None,
                },
                "path": f"/{self.stage}{path}",
                "protocol": "HTTP/1.1",
                "requestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "resourceId": secrets.token_hex(3),
                "resourcePath": route.resource,
                "stage": self.stage,
            },
            "body": text,
            "isBase64Encoded": encoded,
        }

    def _is_binary(self, content_type: str) -> bool:
        media_type = content_type.partition(";")[0].strip().lower()
        return any(
            fnmatch.fnmatchcase(media_type, pattern.replace("~1", "/").lower())
            for pattern in self.binary_media_types
        )

    def _proxy_answer(self, result: Any, request_id: str) -> Answer:
        if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int | str):
            return self._gateway_answer(
                502, "INTEGRATION_FAILURE", "Internal server error", request_id
            )
        try:
            status = int(result["statusCode"])
        except ValueError:
            return self._gateway_answer(
                502, "INTEGRATION_FAILURE", "Internal server error", request_id
            )
        headers: list[tuple[str, str]] = []
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((str(name), str(value)) for value in values)
        for name, value in (result.get("headers") or {}).items():
            if not any(existing.lower() == str(name).lower() for existing, _ in headers):
                headers.append((str(name), str(value)))
        raw = result.get("body")
        body = b"" if raw is None else str(raw).encode()
        if result.get("isBase64Encoded") and raw is not None:
            body = base64.b64decode(str(raw))
        return self._finish(status, headers, body, request_id)

    def _gateway_answer(
        self, status: int, response_type: str, message: str, request_id: str
    ) -> Answer:
        """API Gateway's own answer, through the API's GatewayResponses when it has them."""
        family = "DEFAULT_4XX" if status < 500 else "DEFAULT_5XX"
        configured = (
            self.gateway_responses.get(response_type) or self.gateway_responses.get(family) or {}
        )
        status = int(configured.get("StatusCode", status))
        template = (configured.get("ResponseTemplates") or {}).get("application/json")
        if template is None:
            body = json.dumps({"message": message}).encode()
        else:
            body = (
                str(template)
                .replace("$context.error.responseType", response_type)
                .replace("$context.error.messageString", json.dumps(message))
                .replace("$context.error.message", message)
                .replace("$context.requestId", request_id)
                .encode()
            )
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", response_type)]
        for name, value in (configured.get("ResponseParameters") or {}).get("Headers", {}).items():
            headers.append((str(name), str(value).strip("'")))
        return self._finish(status, headers, body, request_id)

    @staticmethod
    def _finish(
        status: int, headers: list[tuple[str, str]], body: bytes, request_id: str
    ) -> Answer:
        names = {name.lower() for name, _ in headers}
        if "content-type" not in names:
            headers.append(("Content-Type", "application/json"))
        headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "connection")]
        headers.append(("Content-Length", str(len(body))))
        headers.append(("x-amzn-RequestId", request_id))
        return Answer(status, headers, body)
