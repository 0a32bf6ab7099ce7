"""``AWS::Serverless::Api``: each REST API of the template gets its loopback gateway
(``gateway``), with the routes of its OpenAPI body and of the functions' ``Api`` events.
A route whose OpenAPI security scheme is ``x-amazon-apigateway-authtype: awsSigv4``, or
whose ``Api`` event says ``Auth: {Authorizer: AWS_IAM}``, takes SigV4 (``sigv4``)."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from baton_local.emulator.functions import LambdaService
from baton_local.emulator.gateway import ANY, AWS_IAM, HTTP_METHODS, RestApi, Route
from baton_local.emulator.lambdas import Invocation
from baton_local.emulator.sigv4 import IamCaller
from baton_local.emulator.stack import Created, Stack
from baton_local.emulator.template import IMPLICIT_API, TemplateError, load_template_file


class ApiProvider:
    """``AWS::Serverless::Api``: an id and a bound loopback port now (so its public URL can
    be rewritten to the local one wherever it is built); routes once every function exists."""

    def __init__(
        self,
        service: LambdaService,
        apis: dict[str, RestApi],
        first_port: int = 0,
        callers: Mapping[str, IamCaller] | None = None,
    ) -> None:
        self.service = service
        self.apis = apis
        self.first_port = first_port
        self.callers = dict(callers or {})

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        properties = resource["Properties"]
        where = f"{logical_id} (AWS::Serverless::Api)"
        uri = properties.get("DefinitionUri")
        if uri is not None and not isinstance(uri, str):
            raise TemplateError(f"{where}: DefinitionUri must be a local file")
        if isinstance(uri, str) and not (self.service.settings.template_dir / uri).is_file():
            raise TemplateError(f"{where}: DefinitionUri {uri} is not a file")

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        stage = stack.properties(logical_id, ["StageName"]).get("StageName")
        if not stage:
            raise TemplateError(f"{logical_id} (AWS::Serverless::Api): StageName is required")
        api_id = stack.stable_id(logical_id, 10, string.ascii_lowercase + string.digits)
        # In the template's order from the first port, so each API keeps its port.
        port = self.first_port + len(self.apis) if self.first_port else 0
        api = RestApi(
            logical_id, api_id, str(stage), stack.template.region, self._invoke, port=port
        )
        api.callers = self.callers
        self.apis[logical_id] = api
        host = re.escape(api.public_host)
        stack.add_replacement(f"https://{host}", api.local_root)
        stack.add_replacement(host, f"127.0.0.1:{api.port}")
        for problem in ("Auth", "Cors"):
            if problem in resource["Properties"]:
                stack.note(f"{logical_id}: {problem} is not emulated")
        root = stack.stable_id(f"{logical_id}/root", 10, string.ascii_lowercase + string.digits)
        return Created(api.api_id, {"RootResourceId": root})

    def _invoke(
        self,
        logical_id: str,
        event: dict[str, Any],
        source: str,
        describe: Callable[[Invocation], str],
    ) -> Invocation:
        return self.service.invoke(logical_id, event, source, kind="api", describe=describe)

    def wire(self, stack: Stack, logical_id: str) -> None:
        """Routes from the OpenAPI body and from the functions' Api events."""
        api = self.apis[logical_id]
        properties = stack.properties(
            logical_id, ["Variables", "BinaryMediaTypes", "GatewayResponses"]
        )
        api.stage_variables = {
            str(k): str(v) for k, v in (properties.get("Variables") or {}).items()
        }
        api.binary_media_types = [str(t) for t in properties.get("BinaryMediaTypes") or []]
        api.gateway_responses = dict(properties.get("GatewayResponses") or {})
        for route in self._definition_routes(stack, logical_id, api):
            api.add_route(route)
        for function in self.service.functions.values():
            for name, event in function.events.items():
                if event.get("Type") != "Api":
                    continue
                event_properties = stack.resolve(
                    event.get("Properties") or {}, f"{function.logical_id} event {name}"
                )
                target = event_properties.get(
                    "RestApiId", IMPLICIT_API if logical_id == IMPLICIT_API else None
                )
                if target not in (logical_id, api.api_id):
                    continue
                method = str(event_properties["Method"]).upper()
                auth = event_properties.get("Auth") or {}
                api.add_route(
                    Route(
                        ANY if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                        str(event_properties["Path"]),
                        function.logical_id,
                        authorization=AWS_IAM if auth.get("Authorizer") == AWS_IAM else "NONE",
                    )
                )

    def _definition_routes(self, stack: Stack, logical_id: str, api: RestApi) -> list[Route]:
        resource = stack.template.resources[logical_id]
        body = resource["Properties"].get("DefinitionBody")
        uri = resource["Properties"].get("DefinitionUri")
        if body is None and isinstance(uri, str):
            body = load_template_file(self.service.settings.template_dir / uri)
        if body is None:
            return []
        definition = stack.resolve(body, f"{logical_id} DefinitionBody")
        schemes = {
            **(definition.get("securityDefinitions") or {}),  # Swagger 2
            **((definition.get("components") or {}).get("securitySchemes") or {}),
        }
        iam_schemes = {
            name
            for name, scheme in schemes.items()
            if str((scheme or {}).get("x-amazon-apigateway-authtype", "")).lower() == "awssigv4"
        }
        routes: list[Route] = []
        for path, operations in (definition.get("paths") or {}).items():
            for key, operation in (operations or {}).items():
                method = "ANY" if key == "x-amazon-apigateway-any-method" else key.upper()
                if method not in HTTP_METHODS and method != ANY:
                    continue
                route = self._route(stack, api, str(path), method, operation or {})
                # An operation's own security replaces the document's, as in OpenAPI.
                security = (operation or {}).get("security", definition.get("security")) or []
                if any(name in iam_schemes for entry in security for name in entry or {}):
                    route.authorization = AWS_IAM
                routes.append(route)
        return routes

    def _route(
        self, stack: Stack, api: RestApi, path: str, method: str, operation: dict[str, Any]
    ) -> Route:
        integration = operation.get("x-amazon-apigateway-integration") or {}
        kind = str(integration.get("type", "")).lower()
        where = f"{api.logical_id} {method} {path}"
        if kind != "aws_proxy":
            stack.note(f"{where}: integration type {kind or 'none'} is not emulated (answers 500)")
            return Route(method, path, None, f"integration type {kind or 'none'} is not emulated")
        uri = re.sub(
            r"\$\{stageVariables\.([A-Za-z0-9_]+)\}",
            lambda m: api.stage_variables.get(m.group(1), m.group(0)),
            str(integration.get("uri", "")),
        )
        found = re.search(r"/functions/(.+?)/invocations", uri)
        target = self.service.find(found.group(1)) if found else None
        if target is None:
            raise TemplateError(
                f"{where}: the integration {uri} reaches no function of this template"
            )
        return Route(method, path, target)
