"""The deployment contract: template.yaml and its build recipes.

Each test names a property that a deploy, an operator or a security review relies on,
so that a change which drops it fails here rather than in a stack update or an audit.
The template is read with a YAML loader that understands CloudFormation's short tags
(tests/support/template.py); samconfig.toml, events/ and the dependency lock have
their own modules beside this one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.template import ROOT, TEMPLATE, load_template

# logical id -> functions/<name>/: the six entry points of the design, plus migrate.
FUNCTIONS = {
    "IntakeFunction": "intake",
    "PromoteFunction": "promote",
    "DispatchFunction": "dispatch",
    "SweepFunction": "sweep",
    "CallbackFunction": "callback",
    "ReconcileFunction": "reconcile",
    "MigrateFunction": "migrate",
}
# Every function that may accept, dispatch or finish a task.
TASK_FUNCTIONS = [name for name in FUNCTIONS if name != "MigrateFunction"]
LAYERS = {"DependenciesLayer": "layers/dependencies", "BatonLayer": "shared"}

# Actions that AWS only authorises on Resource "*" (no resource-level permissions).
# None is needed by this template today (SAM adds the AWS managed policies for X-Ray
# and VPC access itself); a statement that adds one must use exactly these actions.
STAR_RESOURCE_ACTIONS = {
    # X-Ray: trace segments are not resources.
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    # VPC-attached Lambda: ENIs do not exist before the call that creates them.
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    # CloudWatch metrics are scoped by namespace condition, not by resource.
    "cloudwatch:PutMetricData",
}


# Whatever needs the API's id takes the one API that the ApiKind parameter created.
API_ID = {"Fn::If": ["UseRestApi", {"Ref": "BatonApi"}, {"Ref": "BatonHttpApi"}]}


def api_sub(node: Any) -> str:
    """The text of a ``!Sub`` whose ``${ApiId}`` is the API of either kind."""
    text, names = node["Fn::Sub"]
    assert names == {"ApiId": API_ID}
    assert isinstance(text, str)
    return text


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: body for name, body in resources.items() if body["Type"] == kind}


def props(resources: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = resources[name].get("Properties", {})
    return found


def function_setting(template: dict[str, Any], name: str, key: str) -> Any:
    """A function property, falling back to Globals.Function as SAM does."""
    own = template["Resources"][name].get("Properties", {})
    return own.get(key, template.get("Globals", {}).get("Function", {}).get(key))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def is_ref(value: Any, name: str) -> bool:
    return bool(value == {"Ref": name})


def is_getatt(value: Any, name: str, attribute: str) -> bool:
    return bool(value == {"Fn::GetAtt": [name, attribute]})


def policy_documents(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM policy document the template writes (not the AWS managed ones SAM adds)."""
    for name, body in resources.items():
        properties = body.get("Properties", {})
        kind = body["Type"]
        if kind == "AWS::Serverless::Function":
            for policy in as_list(properties.get("Policies", [])):
                if isinstance(policy, dict) and "Statement" in policy:
                    yield name, policy
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            yield name, properties["PolicyDocument"]
        elif kind == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                yield name, policy["PolicyDocument"]


def allow_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, document in policy_documents(resources):
        for statement in as_list(document["Statement"]):
            if statement.get("Effect", "Allow") == "Allow":
                yield name, statement


# --------------------------------------------------------------------------- basics
def test_is_a_sam_template(template: dict[str, Any]) -> None:
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template["Transform"] == "AWS::Serverless-2016-10-31"


def test_functions_run_python_312_or_newer_on_arm64(template: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        runtime = function_setting(template, name, "Runtime")
        match = re.fullmatch(r"python3\.(\d+)", runtime)
        assert match, f"{name}: runtime {runtime}"
        assert int(match.group(1)) >= 12, f"{name}: runtime {runtime}"
        assert function_setting(template, name, "Architectures") == ["arm64"], name
        assert function_setting(template, name, "Handler") == "app.lambda_handler", name


def test_each_function_is_built_from_its_own_folder(resources: dict[str, Any]) -> None:
    assert set(of_type(resources, "AWS::Serverless::Function")) == set(FUNCTIONS)
    for name, folder in FUNCTIONS.items():
        code_uri = props(resources, name)["CodeUri"]
        assert code_uri.rstrip("/") == f"functions/{folder}", f"{name}: CodeUri {code_uri}"


def test_everything_builds_with_its_makefile(resources: dict[str, Any]) -> None:
    """The build host's Python is not the runtime's: only Makefile builds work everywhere."""
    sources = {name: f"functions/{folder}" for name, folder in FUNCTIONS.items()} | LAYERS
    for name, source in sources.items():
        assert resources[name].get("Metadata", {}).get("BuildMethod") == "makefile", name
        makefile = ROOT / source / "Makefile"
        assert makefile.is_file(), f"{name}: {makefile} is missing"
        assert re.search(rf"^build-{name}:", makefile.read_text(), re.MULTILINE), (
            f"{makefile} has no build-{name} target"
        )


def test_layers_ship_dependencies_and_the_baton_package(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    for name, content in LAYERS.items():
        layer = props(resources, name)
        assert resources[name]["Type"] == "AWS::Serverless::LayerVersion"
        assert layer["ContentUri"].rstrip("/") == content
        assert layer["CompatibleArchitectures"] == ["arm64"]
        assert layer["CompatibleRuntimes"] == ["python3.12"]
    layers = template["Globals"]["Function"]["Layers"]
    assert {"Ref": "DependenciesLayer"} in layers
    assert {"Ref": "BatonLayer"} in layers


def test_functions_trace_log_json_and_run_in_the_vpc(template: dict[str, Any]) -> None:
    function = template["Globals"]["Function"]
    assert function["Tracing"] == "Active"
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    # Lambda's platform.start and platform.report lines only where asked for
    assert function["LoggingConfig"]["SystemLogLevel"] == {"Ref": "PlatformLogLevel"}
    assert template["Parameters"]["PlatformLogLevel"]["Default"] == "WARN"
    assert function["VpcConfig"]["SecurityGroupIds"] == [{"Ref": "LambdaSecurityGroup"}]
    assert function["VpcConfig"]["SubnetIds"] == {"Ref": "SubnetIds"}


def test_settings_are_passed_as_the_documented_variables(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for name in (
        "BATON_DATABASE_SECRET_ARN",
        "BATON_DATABASE_HOST",
        "BATON_DATABASE_PORT",
        "BATON_DATABASE_NAME",
        "BATON_REDIS_URL",
        "BATON_RESULT_BUCKET",
        "BATON_NOTIFICATION_TOPIC_ARN",
        "BATON_CALLBACK_BASE_URL",
        "BATON_TOKEN_SECRET_ARN",
        "BATON_ALGORITHMS_PARAMETER",
        "BATON_KEY_PREFIX",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    ):
        assert name in variables, name
    # Exactly one source per setting: the deployed stack never sets the local ones
    # (declaring them empty, for `sam local invoke --env-vars`, is fine).
    for local in ("BATON_DATABASE_URL", "BATON_TOKEN_SECRET", "BATON_ALGORITHMS"):
        assert variables.get(local, "") == "", local
    callback_url = api_sub(variables["BATON_CALLBACK_BASE_URL"])
    assert callback_url.startswith("https://${ApiId}.execute-api.")
    assert callback_url.endswith("/${Stage}")


# --------------------------------------------------------------------------- IAM
def test_no_policy_statement_allows_a_wildcard_action(resources: dict[str, Any]) -> None:
    for name, statement in allow_statements(resources):
        assert "NotAction" not in statement, name
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{name}: wildcard action {action}"


def test_wildcard_resources_only_for_actions_that_require_them(
    resources: dict[str, Any],
) -> None:
    for name, statement in allow_statements(resources):
        assert "NotResource" not in statement, name
        if "*" in as_list(statement["Resource"]):
            extra = set(as_list(statement["Action"])) - STAR_RESOURCE_ACTIONS
            assert not extra, f"{name}: Resource '*' for {sorted(extra)}"


def test_every_statement_names_its_resources(resources: dict[str, Any]) -> None:
    for name, statement in allow_statements(resources):
        for resource in as_list(statement["Resource"]):
            if isinstance(resource, str) and resource != "*":
                # A literal ARN would point at someone else's resources.
                pytest.fail(f"{name}: literal resource {resource}")


def test_task_functions_get_exactly_the_lifecycle_permissions(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    for name in TASK_FUNCTIONS:
        assert props(resources, name)["Policies"] == [{"Ref": "TaskLifecyclePolicy"}], name
    statements = {
        statement["Sid"]: statement
        for statement in props(resources, "TaskLifecyclePolicy")["PolicyDocument"]["Statement"]
    }
    secrets = statements["ReadSecrets"]
    assert secrets["Action"] == "secretsmanager:GetSecretValue"
    assert {"Ref": "TokenSecret"} in secrets["Resource"]
    database_secret = {
        "Fn::If": [
            "CreateDatabase",
            {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]},
            {"Ref": "ExistingDatabaseSecretArn"},
        ]
    }
    assert database_secret in secrets["Resource"]

    registry = statements["ReadAlgorithmRegistry"]
    assert registry["Action"] == "ssm:GetParameter"
    assert registry["Resource"]["Fn::Sub"].endswith(":parameter${AlgorithmsParameter}")
    assert props(resources, "AlgorithmsParameter")["Name"]["Fn::Sub"].startswith("/")

    assert statements["PublishNotifications"]["Action"] == "sns:Publish"
    assert is_ref(statements["PublishNotifications"]["Resource"], "NotificationTopic")

    results = statements["ReadWriteResults"]
    assert sorted(results["Action"]) == ["s3:GetObject", "s3:PutObject"]
    prefix = template["Globals"]["Function"]["Environment"]["Variables"]["BATON_RESULT_PREFIX"]
    assert results["Resource"] == {"Fn::Sub": f"${{ResultBucket.Arn}}/{prefix}/*"}
    listing = statements["ListResults"]
    assert listing["Action"] == "s3:ListBucket"
    assert is_getatt(listing["Resource"], "ResultBucket", "Arn")


def test_migrate_only_reads_the_database_secret(resources: dict[str, Any]) -> None:
    (policy,) = props(resources, "MigrateFunction")["Policies"]
    (statement,) = policy["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"]["Fn::If"][0] == "CreateDatabase"


# --------------------------------------------------------------------------- encryption
def test_result_bucket_is_encrypted_private_versioned_and_expires(
    resources: dict[str, Any],
) -> None:
    bucket = props(resources, "ResultBucket")
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert rule["BucketKeyEnabled"] is True
    block = bucket["PublicAccessBlockConfiguration"]
    for flag in (
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ):
        assert block[flag] is True, flag
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    rules = bucket["LifecycleConfiguration"]["Rules"]
    enabled = [rule for rule in rules if rule["Status"] == "Enabled"]
    assert any(is_ref(rule.get("ExpirationInDays"), "ResultRetentionDays") for rule in enabled)
    assert any("AbortIncompleteMultipartUpload" in rule for rule in enabled)
    assert any("NoncurrentVersionExpiration" in rule for rule in enabled)


def test_result_bucket_refuses_plain_http(resources: dict[str, Any]) -> None:
    (policy,) = [
        body["Properties"]
        for body in of_type(resources, "AWS::S3::BucketPolicy").values()
        if is_ref(body["Properties"]["Bucket"], "ResultBucket")
    ]
    denials = [
        statement
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert denials
    covered = {json.dumps(resource, sort_keys=True) for resource in denials[0]["Resource"]}
    assert json.dumps({"Fn::GetAtt": ["ResultBucket", "Arn"]}, sort_keys=True) in covered
    assert json.dumps({"Fn::Sub": "${ResultBucket.Arn}/*"}, sort_keys=True) in covered


def test_notification_topic_is_encrypted(resources: dict[str, Any]) -> None:
    assert props(resources, "NotificationTopic")["KmsMasterKeyId"] == "alias/aws/sns"


def test_every_queue_is_encrypted(resources: dict[str, Any]) -> None:
    queues = of_type(resources, "AWS::SQS::Queue")
    assert set(queues) >= {"IntakeQueue", "IntakeDeadLetterQueue"}
    for name, body in queues.items():
        queue = body["Properties"]
        assert queue.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue, name


def test_intake_queue_redrives_to_the_dead_letter_queue(resources: dict[str, Any]) -> None:
    redrive = props(resources, "IntakeQueue")["RedrivePolicy"]
    assert is_getatt(redrive["deadLetterTargetArn"], "IntakeDeadLetterQueue", "Arn")
    assert redrive["maxReceiveCount"] >= 5


def test_intake_visibility_timeout_covers_six_function_timeouts(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    timeout = function_setting(template, "IntakeFunction", "Timeout")
    window = props(resources, "IntakeFunction")["Events"]["IntakeQueue"]["Properties"][
        "MaximumBatchingWindowInSeconds"
    ]
    assert props(resources, "IntakeQueue")["VisibilityTimeout"] >= 6 * timeout + window


def test_dead_letters_outlive_the_source_queue(resources: dict[str, Any]) -> None:
    source = props(resources, "IntakeQueue").get("MessageRetentionPeriod", 345600)
    assert props(resources, "IntakeDeadLetterQueue")["MessageRetentionPeriod"] > source


def test_created_database_is_encrypted_private_and_backed_up(resources: dict[str, Any]) -> None:
    database = resources["Database"]
    assert database["Condition"] == "CreateDatabase"
    assert database["DeletionPolicy"] == "Snapshot"
    settings = database["Properties"]
    assert settings["Engine"] == "mysql"
    assert str(settings["EngineVersion"]).startswith("8.0")
    assert settings["StorageEncrypted"] is True
    assert settings["ManageMasterUserPassword"] is True
    assert settings["PubliclyAccessible"] is False
    assert settings["BackupRetentionPeriod"] >= 7
    assert is_ref(settings["DeletionProtection"], "DatabaseDeletionProtection")


def test_cache_traffic_is_encrypted_in_transit(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    # Serverless caches always require TLS; node-based ones must turn it on.
    serverless = of_type(resources, "AWS::ElastiCache::ServerlessCache")
    groups = of_type(resources, "AWS::ElastiCache::ReplicationGroup")
    assert serverless or groups
    for name, body in groups.items():
        assert body["Properties"].get("TransitEncryptionEnabled") is True, name
        assert body["Properties"].get("AtRestEncryptionEnabled") is True, name
    url = template["Globals"]["Function"]["Environment"]["Variables"]["BATON_REDIS_URL"]
    created = url["Fn::If"][1]["Fn::Sub"]
    assert created.startswith("rediss://")


def test_cache_and_database_accept_only_the_functions(resources: dict[str, Any]) -> None:
    for group, port in (("CacheSecurityGroup", 6379), ("DatabaseSecurityGroup", 3306)):
        (rule,) = props(resources, group)["SecurityGroupIngress"]
        assert (rule["FromPort"], rule["ToPort"]) == (port, port), group
        assert is_ref(rule["SourceSecurityGroupId"], "LambdaSecurityGroup"), group
        assert "CidrIp" not in rule, group
        assert "CidrIpv6" not in rule, group


def test_token_secret_is_generated(resources: dict[str, Any]) -> None:
    generated = props(resources, "TokenSecret")["GenerateSecretString"]
    assert generated["PasswordLength"] >= 64
    assert generated["ExcludePunctuation"] is True
    assert "SecretStringTemplate" not in generated  # a plain key, not a JSON document


# --------------------------------------------------------------------------- entry points
def test_intake_reports_batch_item_failures(resources: dict[str, Any]) -> None:
    event = props(resources, "IntakeFunction")["Events"]["IntakeQueue"]
    assert event["Type"] == "SQS"
    settings = event["Properties"]
    assert is_getatt(settings["Queue"], "IntakeQueue", "Arn")
    assert settings["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert settings["BatchSize"] == 10
    assert settings["MaximumBatchingWindowInSeconds"] == 1


@pytest.mark.parametrize(
    ("name", "rate"),
    [
        ("PromoteFunction", "rate(1 minute)"),
        ("DispatchFunction", "rate(1 minute)"),
        ("SweepFunction", "rate(1 minute)"),
        ("ReconcileFunction", "rate(5 minutes)"),
    ],
)
def test_timers(resources: dict[str, Any], name: str, rate: str) -> None:
    (event,) = props(resources, name)["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == rate


CALLBACK_ROUTES = {("post", "/tasks/{task_id}/callback"), ("post", "/tasks/{task_id}/heartbeat")}
STATUS_ROUTES = {
    ("get", "/tasks/{task_id}"),
    ("get", "/apps/{app}/tasks"),
    ("post", "/tasks/{task_id}/cancel"),
    ("post", "/apps/{app}/tasks/cancel"),
}
STATUS_GRANTS = {
    "GET/tasks/*",
    "GET/apps/*/tasks",
    "POST/tasks/*/cancel",
    "POST/apps/*/tasks/cancel",
}


def test_callback_api_routes_reach_the_callback_function(resources: dict[str, Any]) -> None:
    api = props(resources, "BatonApi")
    assert resources["BatonApi"]["Type"] == "AWS::Serverless::Api"
    assert is_ref(api["StageName"], "Stage")
    assert api["TracingEnabled"] is True
    assert api["MethodSettings"][0]["ThrottlingRateLimit"] > 0
    assert api["MethodSettings"][0]["ThrottlingBurstLimit"] > 0
    assert is_getatt(api["AccessLogSetting"]["DestinationArn"], "ApiAccessLogGroup", "Arn")
    assert is_ref(api["Variables"]["callbackFunction"], "CallbackFunction")
    paths = api["DefinitionBody"]["paths"]
    routes = {(method, path) for path, methods in paths.items() for method in methods}
    assert routes == CALLBACK_ROUTES | STATUS_ROUTES
    for method, path in routes:
        integration = paths[path][method]["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy", path  # REST payload 1.0 proxy events
        assert integration["httpMethod"] == "POST", path  # Lambda is always invoked by POST
        assert "${!stageVariables.callbackFunction}" in integration["uri"]["Fn::Sub"], path
    granted = {
        api_sub(body["Properties"]["SourceArn"]).split("/${Stage}/", 1)[1]
        for body in of_type(resources, "AWS::Lambda::Permission").values()
        if is_ref(body["Properties"]["FunctionName"], "CallbackFunction")
        and body["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }
    assert granted == {"POST/tasks/*/callback", "POST/tasks/*/heartbeat"} | STATUS_GRANTS


def test_only_the_status_routes_take_iam_authorization(resources: dict[str, Any]) -> None:
    definition = props(resources, "BatonApi")["DefinitionBody"]
    schemes = definition["components"]["securitySchemes"]
    iam = {
        name
        for name, scheme in schemes.items()
        if scheme.get("x-amazon-apigateway-authtype") == "awsSigv4"
    }
    assert iam == {"sigv4"}
    assert schemes["sigv4"] == {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "awsSigv4",
    }
    # No API-wide security (it would apply to every route) and no SAM Auth (it would
    # add a default authorizer): each route says its own.
    assert "security" not in definition
    assert "Auth" not in props(resources, "BatonApi")
    for path, methods in definition["paths"].items():
        for method, operation in methods.items():
            security = operation.get("security", [])
            if (method, path) in STATUS_ROUTES:
                assert security == [{"sigv4": []}], (method, path)
            else:
                # The callback routes keep their bearer tokens, checked by the function.
                assert not any(name in iam for entry in security for name in entry), path
    by_key = definition["paths"]["/apps/{app}/tasks"]["get"]["parameters"]
    assert {"name": "idempotency_key", "in": "query", "required": True}.items() <= next(
        parameter for parameter in by_key if parameter["name"] == "idempotency_key"
    ).items()


def test_the_api_kind_is_a_parameter_and_exactly_one_api_exists(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    parameter = template["Parameters"]["ApiKind"]
    assert parameter["AllowedValues"] == ["REST", "HTTP"]
    assert parameter["Default"] == "REST"
    conditions = template["Conditions"]
    assert conditions["UseRestApi"] == {"Fn::Equals": [{"Ref": "ApiKind"}, "REST"]}
    assert conditions["UseHttpApi"] == {"Fn::Equals": [{"Ref": "ApiKind"}, "HTTP"]}
    apis = {
        name: body
        for name, body in resources.items()
        if body["Type"] in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi")
    }
    assert {name: body.get("Condition") for name, body in apis.items()} == {
        "BatonApi": "UseRestApi",
        "BatonHttpApi": "UseHttpApi",
    }
    assert resources["BatonHttpApi"]["Type"] == "AWS::Serverless::HttpApi"


def test_the_http_api_serves_the_same_routes_with_payload_2_0(resources: dict[str, Any]) -> None:
    api = props(resources, "BatonHttpApi")
    assert is_ref(api["StageName"], "Stage")  # the URL ends in /<Stage>, as the REST one
    assert is_ref(api["StageVariables"]["callbackFunction"], "CallbackFunction")
    assert api["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    assert api["DefaultRouteSettings"]["ThrottlingBurstLimit"] > 0
    assert is_getatt(api["AccessLogSettings"]["DestinationArn"], "ApiAccessLogGroup", "Arn")
    json.loads(api["AccessLogSettings"]["Format"])  # one JSON object per request
    assert "Auth" not in api  # SAM's Auth would add a default authorizer to every route
    definition = api["DefinitionBody"]
    assert "security" not in definition
    paths = definition["paths"]
    routes = {(method, path) for path, methods in paths.items() for method in methods}
    assert routes == CALLBACK_ROUTES | STATUS_ROUTES
    for method, path in routes:
        operation = paths[path][method]
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy", path
        assert integration["httpMethod"] == "POST", path
        assert integration["payloadFormatVersion"] == "2.0", path
        assert "${!stageVariables.callbackFunction}" in integration["uri"]["Fn::Sub"], path
        if (method, path) in STATUS_ROUTES:
            assert operation["security"] == [{"sigv4": []}], (method, path)
        else:
            assert "security" not in operation, (method, path)  # bearer tokens instead
    assert definition["components"]["securitySchemes"]["sigv4"] == {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "awsSigv4",
    }


def test_callers_of_the_status_api_get_a_policy_for_its_routes_only(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    (statement,) = props(resources, "StatusApiCallerPolicy")["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    routes = {api_sub(resource).split("/${Stage}/", 1)[1] for resource in statement["Resource"]}
    assert routes == STATUS_GRANTS
    for resource in statement["Resource"]:
        assert api_sub(resource).startswith(
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${ApiId}/"
        )
    outputs = template["Outputs"]
    assert is_ref(outputs["StatusApiCallerPolicyArn"]["Value"], "StatusApiCallerPolicy")
    assert outputs["StatusApiUrl"]["Value"] == outputs["CallbackBaseUrl"]["Value"]
    invoke_arns = api_sub(outputs["StatusApiInvokeArns"]["Value"]).split(",")
    assert {arn.split("/${Stage}/", 1)[1] for arn in invoke_arns} == STATUS_GRANTS


def test_operators_of_the_status_api_are_a_parameter(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert is_ref(variables["BATON_OPERATOR_PRINCIPALS"], "OperatorPrincipals")
    parameter = template["Parameters"]["OperatorPrincipals"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    for accepted in ("", "arn:aws:iam::123456789012:role/ops,arn:aws:iam::123456789012:user/a"):
        assert pattern.fullmatch(accepted), accepted
    assert not pattern.fullmatch("ops")


def test_schema_migrates_before_the_functions_start(resources: dict[str, Any]) -> None:
    schema = resources["DatabaseSchema"]
    assert schema["Type"] in ("AWS::CloudFormation::CustomResource", "Custom::DatabaseSchema")
    settings = schema["Properties"]
    assert is_getatt(settings["ServiceToken"], "MigrateFunction", "Arn")
    # Properties that change when a migration may be due: new code, or on request.
    assert is_ref(settings["BatonLayerVersion"], "BatonLayer")
    assert is_ref(settings["SchemaVersion"], "SchemaVersion")
    for name in TASK_FUNCTIONS:
        assert "DatabaseSchema" in as_list(resources[name].get("DependsOn", [])), name


# --------------------------------------------------------------------------- dependency graph
_SUB_NAME = re.compile(r"\$\{([^}!][^}]*)\}")
_STAGE_PROPERTIES = {
    "StageName",
    "Variables",
    "MethodSettings",
    "AccessLogSetting",
    "TracingEnabled",
    "CacheClusterEnabled",
    "CacheClusterSize",
    "CanarySetting",
}
_HTTP_STAGE_PROPERTIES = {
    "StageName",
    "StageVariables",
    "DefaultRouteSettings",
    "RouteSettings",
    "AccessLogSettings",
}


def references(node: Any, names: set[str]) -> set[str]:
    """Logical ids that ``node`` refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and value in names:
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else value.split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text, local = (value, {}) if isinstance(value, str) else value
                for match in _SUB_NAME.findall(text):
                    target = match.split(".")[0]
                    if target in names and target not in local:
                        found.add(target)
                found |= references(local, names)
            else:
                found |= references(value, names)
    elif isinstance(node, list):
        for item in node:
            found |= references(item, names)
    return found & names


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def raw_dependency_graph(template: dict[str, Any]) -> dict[str, set[str]]:
    """Dependencies as CloudFormation will see them after the SAM transform, for the
    parts of the transform that can add edges: Globals are merged into functions, an
    Api's stage settings live on a separate Stage, and an `Api` or `S3` event makes the
    API or bucket refer to the function."""
    resources = template["Resources"]
    names = set(resources)
    globals_ = template.get("Globals", {}).get("Function", {})
    graph: dict[str, set[str]] = {}
    for name, body in resources.items():
        properties = dict(body.get("Properties", {}))
        if body["Type"] == "AWS::Serverless::Function":
            events = properties.pop("Events", {})
            properties = {**globals_, **properties}
            for event in events.values():
                if event["Type"] in ("Api", "S3"):
                    for owner in references(event["Properties"], names):
                        graph.setdefault(owner, set()).add(name)
                else:
                    graph.setdefault(f"{name}.{event['Type']}", set()).update(
                        references(event, names) | {name}
                    )
        stage_properties = {
            "AWS::Serverless::Api": _STAGE_PROPERTIES,
            "AWS::Serverless::HttpApi": _HTTP_STAGE_PROPERTIES,
        }.get(body["Type"], set())
        if stage_properties:
            stage = {key: properties.pop(key) for key in stage_properties & set(properties)}
            graph.setdefault(f"{name}.Stage", set()).update(references(stage, names) | {name})
        edges = references(properties, names) | set(as_list(body.get("DependsOn", [])))
        graph.setdefault(name, set()).update(edges)
    return graph


def test_no_circular_dependency(template: dict[str, Any]) -> None:
    assert find_cycle(raw_dependency_graph(template)) is None


def test_cycle_detection_catches_an_api_event_on_the_callback_function() -> None:
    """Guards the guard: SAM's usual `Events: Api` would loop through BatonApi."""
    template = load_template()
    template["Resources"]["CallbackFunction"]["Properties"]["Events"] = {
        "Callback": {
            "Type": "Api",
            "Properties": {
                "RestApiId": {"Ref": "BatonApi"},
                "Path": "/tasks/{task_id}/callback",
                "Method": "post",
            },
        }
    }
    assert find_cycle(raw_dependency_graph(template)) is not None


def test_no_circular_dependency_after_the_sam_transform(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    translator = pytest.importorskip("samtranslator.translator.transform")
    yaml_parse = pytest.importorskip("samtranslator.yaml_helper").yaml_parse

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    source = yaml_parse(TEMPLATE.read_text())
    for name, body in source["Resources"].items():  # as after `sam package`
        for key in ("CodeUri", "ContentUri"):
            if key in body.get("Properties", {}):
                body["Properties"][key] = f"s3://artifacts/{name}.zip"

    class NoManagedPolicyNames:
        def load(self) -> dict[str, str]:
            return {}

    transformed = translator.transform(source, {}, NoManagedPolicyNames())
    resources = transformed["Resources"]
    names = set(resources)
    graph = {
        name: references(body.get("Properties", {}), names)
        | set(as_list(body.get("DependsOn", [])))
        for name, body in resources.items()
    }
    assert find_cycle(graph) is None
    stages = of_type(resources, "AWS::ApiGateway::Stage")
    assert len(stages) == 1  # no stray "Stage" stage
    (http_stage,) = of_type(resources, "AWS::ApiGatewayV2::Stage").values()
    assert http_stage["Condition"] == "UseHttpApi"
    assert is_ref(http_stage["Properties"]["StageName"], "Stage")


# --------------------------------------------------------------------------- operations
def test_alarms_cover_the_dlq_every_function_and_the_api(resources: dict[str, Any]) -> None:
    alarms = [body["Properties"] for body in of_type(resources, "AWS::CloudWatch::Alarm").values()]

    def alarmed(namespace: str, metric: str, dimension: Any) -> bool:
        return any(
            alarm.get("Namespace") == namespace
            and alarm.get("MetricName") == metric
            and any(item["Value"] == dimension for item in alarm["Dimensions"])
            and alarm["ComparisonOperator"] == "GreaterThanThreshold"
            and alarm["Threshold"] == 0
            and alarm["AlarmActions"]
            for alarm in alarms
        )

    assert alarmed(
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"Fn::GetAtt": ["IntakeDeadLetterQueue", "QueueName"]},
    )
    for name in FUNCTIONS:
        assert alarmed("AWS/Lambda", "Errors", {"Ref": name}), name
    # One alarm on the API of either kind: a REST API's 5XXError by ApiName, an HTTP
    # API's 5xx by ApiId (their metrics are named differently).
    (api_alarm,) = [alarm for alarm in alarms if alarm.get("Namespace") == "AWS/ApiGateway"]
    assert api_alarm["MetricName"] == {"Fn::If": ["UseRestApi", "5XXError", "5xx"]}
    by_api, stage = api_alarm["Dimensions"]
    assert by_api == {
        "Fn::If": [
            "UseRestApi",
            {"Name": "ApiName", "Value": props(resources, "BatonApi")["Name"]},
            {"Name": "ApiId", "Value": {"Ref": "BatonHttpApi"}},
        ]
    }
    assert stage == {"Name": "Stage", "Value": {"Ref": "Stage"}}
    assert (api_alarm["ComparisonOperator"], api_alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert api_alarm["AlarmActions"]
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert is_ref(subscription["Properties"]["Endpoint"], "AlarmEmail")


def test_outputs(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) >= {
        "IntakeQueueUrl",
        "IntakeQueueArn",
        "DeadLetterQueueUrl",
        "NotificationTopicArn",
        "CallbackBaseUrl",
        "ResultBucketName",
        "TokenSecretArn",
    }


def test_existing_redis_and_database_switch_off_the_created_ones(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    conditions = template["Conditions"]
    assert conditions["CreateCache"] == {"Fn::Equals": [{"Ref": "ExistingRedisUrl"}, ""]}
    assert conditions["CreateDatabase"] == {
        "Fn::Equals": [{"Ref": "ExistingDatabaseSecretArn"}, ""]
    }
    for name in ("Cache", "CacheSecurityGroup"):
        assert resources[name]["Condition"] == "CreateCache", name
    for name in ("Database", "DatabaseSecurityGroup", "DatabaseSubnetGroup"):
        assert resources[name]["Condition"] == "CreateDatabase", name


# --------------------------------------------------------------------------- app registry
def _ssm_arn_of(parameter: str) -> dict[str, str]:
    return {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
        f"parameter${{{parameter}}}"
    }


def test_the_app_registry_is_optional_and_beside_the_algorithm_registry(
    template: dict[str, Any],
) -> None:
    parameter = template["Parameters"]["AppsJson"]
    # Empty (open mode) by default: "{}" would register no app and refuse everything.
    assert parameter["Type"] == "String"
    assert parameter["Default"] == ""
    assert parameter["MaxLength"] <= 4096  # a Standard-tier SSM parameter
    pattern = re.compile(parameter["AllowedPattern"])
    for accepted in ("", "{}", '{"portal": {"senders": [], "principals": []}}'):
        assert pattern.fullmatch(accepted), accepted
    for refused in ("portal", "[]", "null"):
        assert not pattern.fullmatch(refused), refused
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    (scheduling,) = [group for group in groups if "AlgorithmsJson" in group["Parameters"]]
    assert "AppsJson" in scheduling["Parameters"]


def test_the_app_registry_parameter_exists_only_with_apps(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    assert template["Conditions"]["HasApps"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AppsJson"}, ""]}]
    }
    parameter = resources["AppsParameter"]
    assert parameter["Type"] == "AWS::SSM::Parameter"
    assert parameter["Condition"] == "HasApps"
    assert is_ref(parameter["Properties"]["Value"], "AppsJson")
    assert parameter["Properties"]["Type"] == "String"
    # A leading slash, so that the ARN in the policy is arn:...:parameter${AppsParameter}
    assert parameter["Properties"]["Name"]["Fn::Sub"].startswith("/")
    output = template["Outputs"]["AppsParameterName"]
    assert output["Condition"] == "HasApps"


def test_functions_read_the_app_registry_parameter_or_run_open(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    # "" counts as unset: without AppsJson there is no app registry (open mode).
    assert variables["BATON_APPS_PARAMETER"] == {
        "Fn::If": ["HasApps", {"Ref": "AppsParameter"}, ""]
    }
    assert variables.get("BATON_APPS", "") == ""


def test_functions_may_read_the_app_registry_parameter_and_nothing_more(
    resources: dict[str, Any],
) -> None:
    statements = {
        statement["Sid"]: statement
        for statement in props(resources, "TaskLifecyclePolicy")["PolicyDocument"]["Statement"]
    }
    apps = statements["ReadAppRegistry"]
    assert apps["Effect"] == "Allow"
    assert apps["Action"] == "ssm:GetParameter"
    # With apps: their parameter alone. Without: the algorithm registry's again, which
    # the functions may read anyway (a statement must name a resource).
    assert apps["Resource"] == {
        "Fn::If": ["HasApps", _ssm_arn_of("AppsParameter"), _ssm_arn_of("AlgorithmsParameter")]
    }
    assert statements["ReadAlgorithmRegistry"]["Resource"] == _ssm_arn_of("AlgorithmsParameter")
    readers = [
        name
        for name, statement in allow_statements(resources)
        if "ssm:GetParameter" in as_list(statement["Action"])
    ]
    assert readers == ["TaskLifecyclePolicy", "TaskLifecyclePolicy"]


def test_a_registry_that_could_not_be_taken_raises_an_alarm(resources: dict[str, Any]) -> None:
    (alarm,) = [
        body["Properties"]
        for body in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if body["Properties"].get("MetricName") == "RegistryRejected"
    ]
    assert alarm["Namespace"] == "Baton"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "baton"}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["TreatMissingData"] == "notBreaching"
    assert is_ref(alarm["AlarmActions"][0], "AlarmTopic")


# Alarm -> (the parameter that sets it, its default, where it goes).
ALARM_PARAMETERS = {
    "OldestPendingAgeAlarm": ("OldestPendingAgeAlarmSeconds", 3600, "Threshold"),
    "TimeoutRateAlarm": ("TimeoutRateAlarmPercent", 20, "Threshold"),
    "CapacitySaturatedAlarm": ("SaturatedAlarmMinutes", 60, "EvaluationPeriods"),
}


@pytest.mark.parametrize("name", sorted(ALARM_PARAMETERS))
def test_backlog_timeout_and_saturation_alarms_take_their_thresholds_from_parameters(
    template: dict[str, Any], resources: dict[str, Any], name: str
) -> None:
    parameter, default, where = ALARM_PARAMETERS[name]
    alarm = props(resources, name)
    assert is_ref(alarm[where], parameter)
    declared = template["Parameters"][parameter]
    assert (declared["Type"], declared["Default"]) == ("Number", default)
    assert declared["MinValue"] >= 1
    assert is_ref(alarm["AlarmActions"][0], "AlarmTopic")
    assert is_ref(alarm["OKActions"][0], "AlarmTopic")
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert any(parameter in group["Parameters"] for group in groups)


def test_the_age_and_saturation_alarms_watch_the_service_totals(
    resources: dict[str, Any],
) -> None:
    for name, metric, statistic in (
        ("OldestPendingAgeAlarm", "OldestPendingAgeSeconds", "Maximum"),
        ("CapacitySaturatedAlarm", "Saturated", "Maximum"),
    ):
        alarm = props(resources, name)
        assert (alarm["Namespace"], alarm["MetricName"]) == ("Baton", metric)
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "baton"}]
        assert (alarm["Statistic"], alarm["Period"]) == (statistic, 60)
    saturated = props(resources, "CapacitySaturatedAlarm")
    # Every minute of the window, not some of them.
    assert saturated["DatapointsToAlarm"] == saturated["EvaluationPeriods"]


def test_the_timeout_rate_alarm_divides_timeouts_by_attempts_ended(
    resources: dict[str, Any],
) -> None:
    alarm = props(resources, "TimeoutRateAlarm")
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    assert {
        key: query["MetricStat"]["Metric"]["MetricName"]
        for key, query in queries.items()
        if "MetricStat" in query
    } == {"timedout": "AttemptsTimedOut", "callbacks": "Callbacks"}
    for key in ("timedout", "callbacks"):
        stat = queries[key]["MetricStat"]
        assert stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": "baton"}]
        assert (stat["Stat"], queries[key]["ReturnData"]) == ("Sum", False)
    (returned,) = [query for query in alarm["Metrics"] if query["ReturnData"]]
    expression = returned["Expression"]["Fn::Sub"]
    assert "${TimeoutRateAlarmMinAttempts}" in expression
    assert "100 * FILL(timedout, 0) / (FILL(timedout, 0) + FILL(callbacks, 0))" in " ".join(
        expression.split()
    )


def test_a_dashboard_ships_with_the_stack(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    (name,) = of_type(resources, "AWS::CloudWatch::Dashboard")
    body = props(resources, name)["DashboardBody"]
    assert "Fn::Sub" in body, "the body names the functions and alarms of this stack"
    assert "DashboardUrl" in template["Outputs"]
    # Its alarm widget shows every alarm of the template.
    alarms = set(of_type(resources, "AWS::CloudWatch::Alarm"))
    shown = set(re.findall(r"\$\{(\w+)\.Arn\}", body["Fn::Sub"]))
    assert shown == alarms


def test_metrics_need_no_cloudwatch_permission(resources: dict[str, Any]) -> None:
    """EMF is written to the logs: no function may call PutMetricData."""
    actions = {
        action
        for _, statement in allow_statements(resources)
        for action in as_list(statement["Action"])
    }
    assert not any(action.startswith("cloudwatch:") for action in actions)
