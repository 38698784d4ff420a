"""dapr.yaml and dapr/components/ hold together as the Dapr CLI reads them.

The Dapr CLI is not installable here (its Go module is not served by the proxy), so
this checks the run file's shape (`dapr run -f .`, version 1) and that every name it
and the components use resolves; tests/integration/test_dapr_run_file.py loads the
components in a real daprd.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def components() -> list[dict]:
    run_file = load(ROOT / "dapr.yaml")
    return [
        load(path) for path in sorted((ROOT / run_file["common"]["resourcesPath"]).glob("*.yaml"))
    ]


def test_the_run_file_names_an_app_the_cli_can_start() -> None:
    run_file = load(ROOT / "dapr.yaml")
    assert run_file["version"] == 1
    assert (ROOT / run_file["common"]["resourcesPath"]).is_dir()
    (app,) = run_file["apps"]
    assert set(app) >= {"appID", "appDirPath", "appPort", "command"}
    assert (ROOT / app["appDirPath"]).is_dir()
    program, target, *options = app["command"]
    assert program == "uvicorn" and options[options.index("--port") + 1] == str(app["appPort"])
    module, attribute = target.split(":")
    assert hasattr(importlib.import_module(module), attribute)
    assert all(name.startswith("SEKIBAN_") for name in app.get("env", {}))


def test_components_reference_only_secrets_the_example_file_names() -> None:
    loaded = components()
    by_name = {component["metadata"]["name"]: component for component in loaded}
    assert all(c["apiVersion"] == "dapr.io/v1alpha1" and c["kind"] == "Component" for c in loaded)
    state = by_name["actorstate"]
    assert state["spec"]["type"] == "state.postgresql"
    fields = {item["name"]: item for item in state["spec"]["metadata"]}
    assert fields["actorStateStore"]["value"] == "true"
    secret = fields["connectionString"]["secretKeyRef"]
    assert "value" not in fields["connectionString"]  # never the password in the file
    store = by_name[state["auth"]["secretStore"]]
    assert store["spec"]["type"] == "secretstores.local.file"
    (secrets_file,) = (m["value"] for m in store["spec"]["metadata"] if m["name"] == "secretsFile")
    example = ROOT / secrets_file.replace("secrets.json", "secrets.example.json")
    assert secret["name"] in json.loads(example.read_text())
    assert f"/{secrets_file}" in (ROOT / ".gitignore").read_text().splitlines()
