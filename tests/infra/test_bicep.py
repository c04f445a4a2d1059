"""Offline checks of infra/main.bicep, infra/main.parameters.json and azure.yaml.

The Bicep is parsed with pycep (a parser, not a compiler); the assertions encode what Flex
Consumption, identity-only storage and the bundle's settings need
(https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan).
pycep renders an identifier and a string literal alike (`name: appName` and `name: 'appName'` both
give "appName"), so values are resolved against the template's variables and parameters first.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

from shared import config

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN_BICEP = INFRA / "main.bicep"
PARAMETERS = INFRA / "main.parameters.json"
AZURE_YAML = ROOT / "azure.yaml"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
CONFIG_SOURCE = ROOT / "shared" / "config.py"

# Settings config.py reads that the Bicep deliberately does not set, with the reason.
# Each must be explained in docs/operations.md.
OPTIONAL_SETTINGS = {
    "AzureWebJobsStorage": "connection-string form; replaced on Azure by the identity-based AzureWebJobsStorage__*",
    "TRACKER_WEBHOOK_URL": "unset: events go to the pull feed only (or to each organization's own endpoint)",
    "TRACKER_WEBHOOK_SECRET": "set with TRACKER_WEBHOOK_URL, as a Key Vault reference, by the operator",
}

# Rejected (or deprecated) on Flex Consumption.
FORBIDDEN_FLEX_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
}

ROLE_IDS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Crypto Service Encryption User": "e147488a-f6f5-4113-8e2d-b22465e65bf6",
}
ROLE_SCOPE_TYPES = {
    "Storage Blob Data Owner": "Microsoft.Storage/storageAccounts",
    "Storage Queue Data Contributor": "Microsoft.Storage/storageAccounts",
    "Storage Table Data Contributor": "Microsoft.Storage/storageAccounts",
    "Monitoring Metrics Publisher": "Microsoft.Insights/components",
    "Key Vault Secrets User": "Microsoft.KeyVault/vaults",
    "Key Vault Crypto Service Encryption User": "Microsoft.KeyVault/vaults/keys",
}

QUEUES = {"subscription-check", "migrate-repo", "sync-outbound", "tracker-events"}

ENV_NAME = re.compile(r"^(?:[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|AzureWebJobs\w+)$")


# ---------------------------------------------------------------- parsing helpers


@pytest.fixture(scope="module")
def bicep() -> dict[str, Any]:
    return dict(BicepParser().parse(file_path=MAIN_BICEP))


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's properties, unwrapping `if (...)` and `for ...` forms."""
    config_: dict[str, Any] = resource["config"]
    while "config" in config_ and ("condition" in config_ or "loop_type" in config_):
        config_ = config_["config"]
    return config_


def resources(bicep: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """Symbolic name → body of every resource of one type."""
    return {name: body(r) for name, r in bicep["resources"].items() if r["type"] == type_}


def only(bicep: dict[str, Any], type_: str) -> tuple[str, dict[str, Any]]:
    found = resources(bicep, type_)
    assert len(found) == 1, f"expected exactly one {type_}, found {sorted(found)}"
    return next(iter(found.items()))


def resolve(bicep: dict[str, Any], value: Any) -> Any:
    """Follow an identifier to its variable value or parameter default."""
    seen = set()
    while isinstance(value, str) and value not in seen:
        seen.add(value)
        if value in bicep.get("variables", {}):
            value = bicep["variables"][value]["value"]
        elif value in bicep.get("parameters", {}):
            value = bicep["parameters"][value]["default"]
        else:
            break
    return value


def accessor(value: Any) -> list[str]:
    """`identity.properties.clientId` → ["identity", "properties", "clientId"]; [] otherwise."""
    path: list[str] = []
    while isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        path.append(operands["operand_1"])
        value = operands["operand_2"]
    if path and isinstance(value, str):
        path.append(value)
    return path


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair nested anywhere in a parsed structure."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def site(bicep: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return only(bicep, "Microsoft.Web/sites")


def identity_name(bicep: dict[str, Any]) -> str:
    return only(bicep, "Microsoft.ManagedIdentity/userAssignedIdentities")[0]


def app_settings(bicep: dict[str, Any]) -> dict[str, Any]:
    """The function app's settings: `config/appsettings` children plus any `siteConfig.appSettings`."""
    site_name, site_body = site(bicep)
    settings: dict[str, Any] = {}
    for entry in site_body.get("properties", {}).get("siteConfig", {}).get("appSettings", []):
        settings[entry["name"]] = entry["value"]
    for config_ in resources(bicep, "Microsoft.Web/sites/config").values():
        if config_.get("parent") == site_name and config_.get("name") == "appsettings":
            settings.update(config_["properties"])
    return settings


def settings_read_by_config() -> set[str]:
    """Environment-variable names shared/config.py passes to a call (e.g. `get("NAME")`).

    String constants are evaluated through module- and function-level assignments and `+`, so
    `get(prefix + "tableServiceUri")` with `prefix = STORAGE_SETTING + "__"` counts too.
    """
    tree = ast.parse(CONFIG_SOURCE.read_text())
    names: dict[str, ast.expr] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            names[node.targets[0].id] = node.value

    def evaluate(expr: ast.expr, depth: int = 0) -> str | None:
        if depth > 20:
            return None
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.Name) and expr.id in names:
            return evaluate(names[expr.id], depth + 1)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            left, right = evaluate(expr.left, depth + 1), evaluate(expr.right, depth + 1)
            return None if left is None or right is None else left + right
        return None

    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for arg in node.args:
                value = evaluate(arg)
                if value is not None and ENV_NAME.match(value):
                    found.add(value)
    return found


# ---------------------------------------------------------------- the template parses


def test_every_bicep_file_parses() -> None:
    files = sorted(INFRA.rglob("*.bicep"))
    assert MAIN_BICEP in files
    for path in files:
        parsed = BicepParser().parse(file_path=path)
        assert parsed["resources"] or parsed.get("modules"), path


def test_target_scope_is_resource_group(bicep: dict[str, Any]) -> None:
    assert bicep["globals"]["scope"]["value"] == "resourceGroup"


def test_only_local_modules(bicep: dict[str, Any]) -> None:
    # Registry modules (br:, br/public:, ts:) need network to restore.
    for path in INFRA.rglob("*.bicep"):
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("module "):
                source = line.split("'")[1]
                assert not re.match(r"^(br|ts)[:/]", source), (path, source)
                assert (path.parent / source).is_file(), (path, source)


# ---------------------------------------------------------------- plan and app


def test_plan_is_flex_consumption_linux(bicep: dict[str, Any]) -> None:
    _, plan = only(bicep, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True


def test_function_app_is_linux_python_311_on_the_plan(bicep: dict[str, Any]) -> None:
    plan_name, _ = only(bicep, "Microsoft.Web/serverfarms")
    resource = next(r for r in bicep["resources"].values() if r["type"] == "Microsoft.Web/sites")
    assert resource["api_version"] >= "2023-12-01"
    _, app = site(bicep)
    assert app["kind"] == "functionapp,linux"
    props = app["properties"]
    assert accessor(props["serverFarmId"]) == [plan_name, "id"]
    assert props["httpsOnly"] is True
    assert props["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    scale = props["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["instanceMemoryMB"] == 2048
    maximum = resolve(bicep, scale["maximumInstanceCount"])
    assert isinstance(maximum, int) and 40 <= maximum <= 1000


def site_tags(bicep: dict[str, Any]) -> dict[str, Any]:
    tags = site(bicep)[1]["tags"]
    if isinstance(tags, dict) and "function" in tags:  # union(tags, {...})
        tags = {
            key: value
            for arg in tags["function"]["parameters"].values()
            for key, value in (resolve(bicep, arg) or {}).items()
        }
    tags = resolve(bicep, tags)
    return {key.strip("'"): value for key, value in tags.items()}


def test_function_app_is_tagged_for_azd(bicep: dict[str, Any]) -> None:
    assert site_tags(bicep)["azd-service-name"] == "api"


def test_function_app_runs_as_the_user_assigned_identity(bicep: dict[str, Any]) -> None:
    uami = identity_name(bicep)
    _, app = site(bicep)
    assert app["identity"]["type"] == "UserAssigned"
    assert list(app["identity"]["userAssignedIdentities"]) == [f"'${{{uami}.id}}'"]
    assert accessor(app["properties"]["keyVaultReferenceIdentity"]) == [uami, "id"]


def test_deployment_package_goes_to_a_blob_container_by_identity(bicep: dict[str, Any]) -> None:
    uami = identity_name(bicep)
    _, app = site(bicep)
    storage = app["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert accessor(storage["authentication"]["userAssignedIdentityResourceId"]) == [uami, "id"]
    containers = resources(bicep, "Microsoft.Storage/storageAccounts/blobServices/containers")
    container_names = {c["name"] for c in containers.values()}
    referenced = re.findall(r"\$\{(\w+)\}", storage["value"])
    assert "primaryEndpoints.blob" in storage["value"]
    assert referenced and referenced[-1] in container_names, "the deployment container must be created"
    assert all(c["properties"]["publicAccess"] == "None" for c in containers.values())


# ---------------------------------------------------------------- storage


def test_storage_account_refuses_keys_and_public_blobs(bicep: dict[str, Any]) -> None:
    _, storage = only(bicep, "Microsoft.Storage/storageAccounts")
    assert storage["kind"] == "StorageV2"
    assert storage["sku"] == {"name": "Standard_LRS"}
    props = storage["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"


def test_the_bundle_queues_are_created(bicep: dict[str, Any]) -> None:
    created: set[str] = set()
    for resource in bicep["resources"].values():
        if resource["type"] != "Microsoft.Storage/storageAccounts/queueServices/queues":
            continue
        loop = resource["config"].get("loop_type")
        if loop:
            created.update(resolve(bicep, loop["detail"]["array_name"]))
        else:
            created.add(resolve(bicep, body(resource)["name"]))
    assert created >= QUEUES


# ---------------------------------------------------------------- identity and roles


def test_identity_holds_every_role_on_the_right_scope(bicep: dict[str, Any]) -> None:
    uami = identity_name(bicep)
    scope_types = {name: r["type"] for name, r in bicep["resources"].items()}
    granted: dict[str, str] = {}
    for assignment in resources(bicep, "Microsoft.Authorization/roleAssignments").values():
        props = assignment["properties"]
        if accessor(props["principalId"]) != [uami, "properties", "principalId"]:
            continue
        assert props["principalType"] == "ServicePrincipal"
        role_function = props["roleDefinitionId"]["function"]
        assert role_function["type"] == "subscription_resource_id"
        assert role_function["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        role_id = resolve(bicep, role_function["parameters"]["resource_name_1"])
        granted[role_id] = scope_types[assignment["scope"]]
        # Deterministic name from scope, principal and role: re-deploys don't duplicate it.
        name = assignment["name"]["function"]
        assert name["type"] == "guid"
        name_args = list(name["parameters"].values())
        assert accessor(name_args[0]) == [assignment["scope"], "id"]
        assert resolve(bicep, name_args[-1]) == role_id
    for role, role_id in ROLE_IDS.items():
        assert role_id in granted, f"{role} is not assigned to the app identity"
        assert granted[role_id] == ROLE_SCOPE_TYPES[role], role


def app_identity_roles(bicep: dict[str, Any]) -> list[tuple[str, str]]:
    """(role definition id, scope symbol) of every assignment to the app's identity."""
    uami = identity_name(bicep)
    roles = []
    for assignment in resources(bicep, "Microsoft.Authorization/roleAssignments").values():
        props = assignment["properties"]
        if accessor(props["principalId"]) == [uami, "properties", "principalId"]:
            role = resolve(bicep, props["roleDefinitionId"]["function"]["parameters"]["resource_name_1"])
            roles.append((role, assignment["scope"]))
    return roles


def test_identity_holds_no_role_beyond_the_listed_ones(bicep: dict[str, Any]) -> None:
    # In particular no Key Vault Crypto User/Officer: the app may wrap and unwrap, never decrypt,
    # sign, export or manage keys.
    granted = [role for role, _ in app_identity_roles(bicep)]
    assert sorted(granted) == sorted(ROLE_IDS.values())


def test_role_assignment_names_are_unique(bicep: dict[str, Any]) -> None:
    assignments = resources(bicep, "Microsoft.Authorization/roleAssignments").values()
    names = [json.dumps(a["name"], sort_keys=True) for a in assignments]
    assert len(names) == len(set(names))


# ---------------------------------------------------------------- monitoring


def test_app_insights_is_workspace_based_with_entra_only_ingestion(bicep: dict[str, Any]) -> None:
    workspace, _ = only(bicep, "Microsoft.OperationalInsights/workspaces")
    insights_name, insights = only(bicep, "Microsoft.Insights/components")
    assert insights["properties"]["Application_Type"] == "web"
    assert accessor(insights["properties"]["WorkspaceResourceId"]) == [workspace, "id"]
    assert insights["properties"]["DisableLocalAuth"] is True
    settings = app_settings(bicep)
    assert accessor(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == [
        insights_name,
        "properties",
        "ConnectionString",
    ]
    uami = identity_name(bicep)
    auth = settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert auth.startswith(f"ClientId=${{{uami}.properties.clientId}};")
    assert "Authorization=AAD" in auth


# ---------------------------------------------------------------- key vault


def test_key_vault_uses_rbac_and_holds_both_secrets(bicep: dict[str, Any]) -> None:
    vault_name, vault = only(bicep, "Microsoft.KeyVault/vaults")
    assert vault["properties"]["enableRbacAuthorization"] is True
    secrets = {
        resolve(bicep, s["name"]): s
        for s in resources(bicep, "Microsoft.KeyVault/vaults/secrets").values()
        if s["parent"] == vault_name
    }
    assert set(secrets) >= {"manage-api-key", "ado-client-secret"}
    for secret in secrets.values():
        param = bicep["parameters"][secret["properties"]["value"]]
        assert {"type": "secure"} in param["decorators"], "secret values come from @secure() params"


def test_secure_parameters_have_no_default(bicep: dict[str, Any]) -> None:
    for name, param in bicep["parameters"].items():
        if {"type": "secure"} in param["decorators"]:
            assert param["default"] in (None, ""), name


def test_secret_settings_are_key_vault_references(bicep: dict[str, Any]) -> None:
    settings = app_settings(bicep)
    secrets = resources(bicep, "Microsoft.KeyVault/vaults/secrets")
    manage = settings["MANAGE_API_KEY"]
    assert manage.startswith("@Microsoft.KeyVault(SecretUri=${") and manage.endswith(")")
    referenced = re.search(r"\$\{(\w+)\.properties\.secretUri\}", manage)
    assert referenced and resolve(bicep, secrets[referenced.group(1)]["name"]) == "manage-api-key"
    # ADO_CLIENT_SECRET: a reference when a secret was given, empty (= unset) for PAT-only setups.
    ado = settings["ADO_CLIENT_SECRET"]["operator"]
    assert ado["type"] == "conditional"
    branches = {ado["operands"]["true_value"], ado["operands"]["false_value"]}
    reference = next(b for b in branches if b)
    assert branches - {reference} == {""}
    assert reference.startswith("@Microsoft.KeyVault(SecretUri=")
    assert "${adoClientSecretSecretName}" in reference
    assert resolve(bicep, "adoClientSecretSecretName") == "ado-client-secret"


def test_token_encryption_key_is_an_rsa_wrap_key_in_the_vault(bicep: dict[str, Any]) -> None:
    vault_name, _ = only(bicep, "Microsoft.KeyVault/vaults")
    _, key = only(bicep, "Microsoft.KeyVault/vaults/keys")
    assert key["parent"] == vault_name
    props = key["properties"]
    assert props["kty"] == "RSA"
    assert sorted(props["keyOps"]) == ["unwrapKey", "wrapKey"]
    size = bicep["parameters"][props["keySize"]]
    assert size["default"] in (2048, 3072)
    allowed = next(d["argument"] for d in size["decorators"] if d["type"] == "allowed")
    assert min(allowed) >= 2048


def test_identity_may_only_wrap_and_unwrap_with_the_token_key(bicep: dict[str, Any]) -> None:
    key_name, _ = only(bicep, "Microsoft.KeyVault/vaults/keys")
    crypto_user = ROLE_IDS["Key Vault Crypto Service Encryption User"]
    scopes = [scope for role, scope in app_identity_roles(bicep) if role == crypto_user]
    assert scopes == [key_name], "granted once, on the key itself"
    on_key = [role for role, scope in app_identity_roles(bicep) if scope == key_name]
    assert on_key == [crypto_user]


def test_token_encryption_key_setting_is_the_unversioned_key_uri(bicep: dict[str, Any]) -> None:
    key_name, _ = only(bicep, "Microsoft.KeyVault/vaults/keys")
    settings = app_settings(bicep)
    # keyUri has no version: seals use the current version after a rotation (keyUriWithVersion would pin it).
    assert accessor(settings["TOKEN_ENCRYPTION_KEY"]) == [key_name, "properties", "keyUri"]
    # The setting only takes effect once the identity may use the key.
    assignment = next(
        name
        for name, r in bicep["resources"].items()
        if r["type"] == "Microsoft.Authorization/roleAssignments"
        and body(r)["scope"] == key_name
        and accessor(body(r)["properties"]["principalId"]) == [identity_name(bicep), "properties", "principalId"]
    )
    depends = next(
        c["dependsOn"] for c in resources(bicep, "Microsoft.Web/sites/config").values() if c["name"] == "appsettings"
    )
    assert assignment in depends


def test_server_hosts_come_from_a_parameter_empty_by_default(bicep: dict[str, Any]) -> None:
    settings = app_settings(bicep)
    assert settings["ADO_SERVER_HOSTS"] in bicep["parameters"]
    assert resolve(bicep, settings["ADO_SERVER_HOSTS"]) == ""


# ---------------------------------------------------------------- app settings


def test_no_setting_flex_consumption_refuses(bicep: dict[str, Any]) -> None:
    settings = app_settings(bicep)
    assert not FORBIDDEN_FLEX_SETTINGS & set(settings)
    keys = {key for key, _ in walk(bicep["resources"])}
    assert "linuxFxVersion" not in keys
    # Nowhere in the template text either (e.g. hidden in a siteConfig variable).
    text = MAIN_BICEP.read_text()
    for name in FORBIDDEN_FLEX_SETTINGS | {"linuxFxVersion"}:
        assert name not in text, name


def test_storage_settings_are_identity_based(bicep: dict[str, Any]) -> None:
    settings = app_settings(bicep)
    uami = identity_name(bicep)
    storage_name, _ = only(bicep, "Microsoft.Storage/storageAccounts")
    assert "AzureWebJobsStorage" not in settings
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert accessor(settings["AzureWebJobsStorage__clientId"]) == [uami, "properties", "clientId"]
    assert accessor(settings["AZURE_CLIENT_ID"]) == [uami, "properties", "clientId"]
    for service in ("blob", "queue", "table"):
        uri = settings[f"AzureWebJobsStorage__{service}ServiceUri"]
        assert accessor(uri) == [storage_name, "properties", "primaryEndpoints", service]
    for value in settings.values():
        assert "AccountKey" not in json.dumps(value) and "listKeys" not in json.dumps(value)


def test_webhook_url_points_at_the_webhook_route(bicep: dict[str, Any]) -> None:
    app_name, _ = site(bicep)
    expected = f"https://${{{app_name}.properties.defaultHostName}}/api/vsts/issue-updated"
    assert app_settings(bicep)["WEBHOOK_URL"] == expected
    assert bicep["outputs"]["WEBHOOK_URL"]["value"] == expected


def test_config_reader_finds_the_known_settings() -> None:
    # Guards the extractor below: if config.py changes shape so that nothing is found, fail loudly.
    found = settings_read_by_config()
    assert {"AzureWebJobsStorage", "AzureWebJobsStorage__tableServiceUri", "MANAGE_API_KEY", "WEBHOOK_URL"} <= found


def test_every_setting_the_bundle_reads_is_set_or_documented_optional(bicep: dict[str, Any]) -> None:
    settings = app_settings(bicep)
    missing = settings_read_by_config() - set(settings) - set(OPTIONAL_SETTINGS)
    assert not missing, f"read by shared/config.py but not set in infra/main.bicep: {sorted(missing)}"


def test_optional_settings_are_real_unset_and_documented(bicep: dict[str, Any]) -> None:
    read = settings_read_by_config()
    settings = app_settings(bicep)
    doc = OPERATIONS_DOC.read_text()
    for name in OPTIONAL_SETTINGS:
        assert name in read, f"{name} is listed as optional but config.py no longer reads it"
        assert name not in settings
        assert f"`{name}`" in doc, f"{name} is not explained in docs/operations.md"


def test_every_app_setting_is_documented(bicep: dict[str, Any]) -> None:
    doc = OPERATIONS_DOC.read_text()
    undocumented = [name for name in app_settings(bicep) if f"`{name}`" not in doc]
    assert not undocumented


def test_setting_defaults_match_the_bundle(bicep: dict[str, Any]) -> None:
    settings = app_settings(bicep)
    expected = {
        "ADO_TOKEN_URL": config.DEFAULT_TOKEN_URL,
        "ADO_ACCOUNT_LOOKUP_URL": config.DEFAULT_ACCOUNT_LOOKUP_URL,
        "ADO_SEARCH_URL": config.DEFAULT_SEARCH_URL,
        "ADO_GRAPH_USERS_URL": config.DEFAULT_GRAPH_USERS_URL,
        "SUBSCRIPTION_SCHEDULE": config.DEFAULT_SUBSCRIPTION_SCHEDULE,
    }
    for name, default in expected.items():
        assert settings[name] in bicep["parameters"], f"{name} should come from a parameter"
        assert resolve(bicep, settings[name]) == default, name


# ---------------------------------------------------------------- outputs, parameters, azd


def test_outputs_for_azd_and_operators(bicep: dict[str, Any]) -> None:
    outputs = bicep["outputs"]
    app_name, _ = site(bicep)
    storage_name, _ = only(bicep, "Microsoft.Storage/storageAccounts")
    vault_name, _ = only(bicep, "Microsoft.KeyVault/vaults")
    assert accessor(outputs["AZURE_FUNCTION_NAME"]["value"]) == [app_name, "name"]
    assert outputs["AZURE_FUNCTION_URL"]["value"] == f"https://${{{app_name}.properties.defaultHostName}}"
    assert accessor(outputs["AZURE_STORAGE_ACCOUNT_NAME"]["value"]) == [storage_name, "name"]
    assert accessor(outputs["AZURE_KEY_VAULT_NAME"]["value"]) == [vault_name, "name"]


def test_parameters_file_follows_azd_conventions(bicep: dict[str, Any]) -> None:
    parameters = json.loads(PARAMETERS.read_text())["parameters"]
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert set(parameters) <= set(bicep["parameters"]), "unknown parameter in main.parameters.json"
    required = {name for name, p in bicep["parameters"].items() if p["default"] is None}
    assert required <= set(parameters), "a required parameter has no value in main.parameters.json"
    # `${NAME=default}`: azd's fallback when the environment lacks NAME; it must match the bundle's.
    assert parameters["adoTokenUrl"]["value"] == f"${{ADO_TOKEN_URL={config.DEFAULT_TOKEN_URL}}}"


def test_azure_yaml_deploys_this_folder_as_the_api_function(bicep: dict[str, Any]) -> None:
    document = yaml.safe_load(AZURE_YAML.read_text())
    assert document["name"]
    assert document["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    assert site_tags(bicep)["azd-service-name"] in document["services"]
