"""What is deployed is what is tested: the stack synthesized with its dependencies layer (built from PyPI
for the functions' runtime and architecture, cached under .venv/lambda-layers), and every handler the
template names imported from the staged code asset + layer in a clean interpreter of the runtime's Python
version, beside only the runtime's boto3 (cdk/lambda_package.py)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from cdk.assets import (
    LAYER_DISTRIBUTIONS,
    RUNTIME_DISTRIBUTIONS,
    build_runtime_sdk,
    deployed_target,
    locked_requirements,
)
from cdk.lambda_package import (
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    DeployedFunction,
    directory_bytes,
    import_handlers,
    runtime_interpreter,
    synthesize_package,
    without_module,
)
from tests.infrastructure.conftest import BASE_CONTEXT

pytestmark = pytest.mark.xdist_group("lambda-package")  # one worker synthesizes the package once

# A quarter of Lambda's limit for code + layers: room for extensions and other layers, and the kubernetes
# client (126 MB) or botocore (32 MB) coming back into the layer (41 MB with the code today) fails here.
PACKAGE_BUDGET_BYTES = LAMBDA_UNZIPPED_LIMIT_BYTES // 4


@dataclass(frozen=True)
class Package:
    functions: list[DeployedFunction]
    python: str
    runtime_sdk: Path


@pytest.fixture(scope="module")
def package() -> Package:
    functions = synthesize_package(BASE_CONTEXT)
    target = functions[0].target
    return Package(functions, runtime_interpreter(target), build_runtime_sdk(target))


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _distributions(directory: Path) -> dict[str, metadata.Distribution]:
    return {_canonical(d.metadata["Name"]): d for d in metadata.distributions(path=[str(directory)])}


def test_every_function_runs_the_runtime_and_architecture_the_layer_is_built_for(package: Package) -> None:
    assert len(package.functions) == 7
    assert {f.target for f in package.functions} == {deployed_target()}
    layers = {f.layer_directories for f in package.functions}
    assert len(layers) == 1 and len(next(iter(layers))) == 1, layers
    assert len({f.code_directory for f in package.functions}) == 1


def test_the_layer_holds_the_locked_dependencies_and_nothing_the_runtime_has(package: Package) -> None:
    layer = _distributions(package.functions[0].layer_directories[0] / "python")
    wanted = dict(r.split("==") for r in locked_requirements(LAYER_DISTRIBUTIONS))
    assert {name: dist.version for name, dist in layer.items()} == {_canonical(k): v for k, v in wanted.items()}
    assert not {_canonical(n) for n in RUNTIME_DISTRIBUTIONS} & set(layer)
    assert "kubernetes" not in layer


def test_every_requirement_of_the_layer_is_in_the_layer_or_the_runtime(package: Package) -> None:
    python_version = package.functions[0].target.python_version
    environment = {"python_version": python_version, "python_full_version": f"{python_version}.0",
                   "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    available = {**_distributions(package.runtime_sdk / "python"),
                 **_distributions(package.functions[0].layer_directories[0] / "python")}  # fmt: skip
    unmet = []
    for name, dist in available.items():
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            have = available.get(_canonical(requirement.name))
            if have is None or not requirement.specifier.contains(have.version, prereleases=True):
                unmet.append(f"{name} needs {requirement} (has {have.version if have else 'none'})")
    assert unmet == []


def test_code_and_layer_unzipped_are_well_under_lambdas_limit(package: Package) -> None:
    function = package.functions[0]
    code = directory_bytes(function.code_directory)
    layer = directory_bytes(function.layer_directories[0])
    assert code + layer <= PACKAGE_BUDGET_BYTES, f"code {code} + layer {layer} bytes"
    assert code < 2 * 1024 * 1024, code  # our own two packages, with their byte code


def test_every_handler_in_the_template_imports_from_asset_and_layer_in_a_clean_interpreter(package: Package) -> None:
    assert {f.module for f in package.functions} >= {"lambdas.bootstrap_rbac.handler", "lambdas.store_secret.handler"}
    for function in package.functions:  # each in its own fresh interpreter: no handler leans on another's imports
        outcome = import_handlers(package.python, function, package.runtime_sdk, absent=("kubernetes", "pytest"))
        [result] = outcome["results"]
        assert result["ok"], (function.handler, result)
        assert outcome["outside"] == [], f"{function.handler} imported from outside the package: {outcome['outside']}"
        assert outcome["absent"] == {"kubernetes": True, "pytest": True}
        assert ".".join(map(str, outcome["version"])) == function.target.python_version


def test_a_module_missing_from_the_asset_fails_the_import_naming_it(package: Package, tmp_path: Path) -> None:
    function = next(f for f in package.functions if f.module == "lambdas.bootstrap_rbac.handler")
    doctored = without_module(function.code_directory, "lifeline_agent/kube.py", tmp_path)
    outcome = import_handlers(package.python, function, package.runtime_sdk, code_directory=doctored)
    [result] = outcome["results"]
    assert not result["ok"], result
    assert re.match(r"(ModuleNotFoundError: No module named 'lifeline_agent\.kube'"
                    r"|ImportError: cannot import name 'kube' from 'lifeline_agent')", result["error"]), result


def test_a_package_missing_from_the_layer_fails_the_import_naming_it(package: Package, tmp_path: Path) -> None:
    function = next(f for f in package.functions if f.module == "lambdas.store_secret.handler")
    view = tmp_path / "layer" / "python"
    view.mkdir(parents=True)
    for entry in (function.layer_directories[0] / "python").iterdir():
        if entry.name != "pydantic_core":
            (view / entry.name).symlink_to(entry)
    doctored = dataclasses.replace(function, layer_directories=(view.parent,))
    [result] = import_handlers(package.python, doctored, package.runtime_sdk)["results"]
    assert not result["ok"] and "No module named 'pydantic_core" in result["error"], result
