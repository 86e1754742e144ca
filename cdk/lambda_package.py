"""The Lambda package as it is deployed, read back from a synthesized cloud assembly, and imported the way the
runtime imports it: for tests/infrastructure/test_lambda_package.py and bench/lambda_package.py.

``synthesize_package`` synthesizes the stack with the dependencies layer, and returns each function as the
template has it (handler, runtime, architecture, environment) with the staged directories of its code asset
and layers (what ``cdk deploy`` zips and uploads). ``import_handlers`` imports handler modules in a fresh
interpreter started with ``-I -S -B``: no site-packages of any environment, no PYTHON* variables, no
``.pyc`` written; its ``sys.path`` is the runtime's order (code, layers, then the runtime's own boto3) in
front of the standard library.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdk.assets import LambdaTarget

# Lambda's limit for a function's code and all its layers, unzipped (262,144,000 bytes).
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
ALLOWED_ENV_PREFIXES = ("LIFELINE_", "POWERTOOLS_")

_IMPORTER = r"""
import importlib, importlib.util, json, sys, sysconfig, time
request = json.loads(sys.argv[1])
sys.path[:0] = request["path"]
roots = request["path"] + [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]]
results = []
for module_name, attribute in request["handlers"]:
    started = time.perf_counter()
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
        results.append({"module": module_name, "ok": callable(handler), "seconds": time.perf_counter() - started})
    except Exception as exc:
        results.append({"module": module_name, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
outside = sorted({m.__name__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)
                  and not any(m.__file__.startswith(root) for root in roots)})
absent = {name: importlib.util.find_spec(name) is None for name in request["absent"]}
print(json.dumps({"results": results, "outside": outside, "absent": absent, "version": list(sys.version_info[:2])}))
"""


class PackageError(RuntimeError):
    """The synthesized package or the interpreter to import it with is not what a test can use."""


@dataclass(frozen=True)
class DeployedFunction:
    logical_id: str
    handler: str  # module.attribute, as the template says
    target: LambdaTarget
    environment: dict[str, str]
    code_directory: Path
    layer_directories: tuple[Path, ...]

    @property
    def module(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def attribute(self) -> str:
        return self.handler.rpartition(".")[2]


def _asset_directory(outdir: Path, resource: dict[str, Any], what: str) -> Path:
    path = str((resource.get("Metadata") or {}).get("aws:asset:path") or "")
    if not path or not (outdir / path).is_dir():
        raise PackageError(f"{what}: no staged asset directory in the cloud assembly ({path!r})")
    return outdir / path


def synthesize_package(context: dict[str, Any]) -> list[DeployedFunction]:
    """Synthesize the stack with its dependencies layer; every Lambda function of the template."""
    from cdk.application import build_app

    app, stack = build_app({**context, "lifeline:dependenciesLayer": True, "aws:cdk:enable-asset-metadata": True})
    assembly = app.synth()
    outdir = Path(assembly.directory)
    resources: dict[str, Any] = assembly.get_stack_by_name(stack.stack_name).template["Resources"]
    functions = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        properties = resource["Properties"]
        layers = []
        for layer in properties.get("Layers", []):
            layer_id = layer.get("Ref") if isinstance(layer, dict) else None
            if layer_id not in resources:
                raise PackageError(f"{logical_id}: layer {layer!r} is not a layer of this stack")
            layers.append(_asset_directory(outdir, resources[layer_id], f"{logical_id} layer {layer_id}"))
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        functions.append(DeployedFunction(
            logical_id=logical_id,
            handler=properties["Handler"],
            target=LambdaTarget(runtime=properties["Runtime"], architecture=(properties.get("Architectures")
                                                                             or ["x86_64"])[0]),
            environment={k: v if isinstance(v, str) else "resolved-at-deploy" for k, v in variables.items()},
            code_directory=_asset_directory(outdir, resource, logical_id),
            layer_directories=tuple(layers),
        ))  # fmt: skip
    return functions


def directory_bytes(directory: Path) -> int:
    """The unzipped size of a directory: every regular file's size (links are not followed)."""
    return sum(p.lstat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def _version_of(python: str) -> str:
    out = subprocess.run([python, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    return out.stdout.strip()


def runtime_interpreter(target: LambdaTarget) -> str:
    """A CPython of the runtime's version on this machine (not a virtual environment's launcher)."""
    wanted = target.python_version
    candidates = [getattr(sys, "_base_executable", ""), sys.executable, shutil.which(f"python{wanted}") or ""]
    for candidate in candidates:
        if candidate and _version_of(candidate) == wanted:
            return candidate
    raise PackageError(f"the functions run {target.runtime}, and this machine has no Python {wanted} to import "
                       "their package with (docs/cloud.md, 'The Lambda package')")  # fmt: skip


def lambda_environment(function: DeployedFunction) -> dict[str, str]:
    """The variables Lambda sets for the function (the template's and the runtime's own), and nothing of ours."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": ":UTC",
        "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_LAMBDA_FUNCTION_NAME": function.logical_id, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.target.runtime}",
        "LAMBDA_TASK_ROOT": str(function.code_directory), "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: an import must not call AWS
        **{k: v for k, v in function.environment.items() if k.startswith(ALLOWED_ENV_PREFIXES)},
    }  # fmt: skip


def runtime_path(code_directory: Path, layer_directories: tuple[Path, ...] | list[Path], runtime_sdk: Path,
                 ) -> list[str]:
    """``sys.path`` in front of the standard library as the runtime orders it: the code, each layer's
    ``python/`` (/opt/python), then the runtime's own boto3."""
    return [str(code_directory), *(str(d / "python") for d in layer_directories), str(runtime_sdk / "python")]


def import_handlers(python: str, function: DeployedFunction, runtime_sdk: Path, *,
                    code_directory: Path | None = None, handlers: list[tuple[str, str]] | None = None,
                    absent: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """Import ``handlers`` (default: the function's) in one fresh clean interpreter. ``code_directory``
    replaces the function's code asset (a doctored copy); ``absent``: names that must not be importable."""
    path = runtime_path(code_directory or function.code_directory, function.layer_directories, runtime_sdk)
    request = {"path": path, "handlers": handlers or [(function.module, function.attribute)], "absent": list(absent)}
    with tempfile.TemporaryDirectory(prefix="lambda-import-") as cwd:  # nothing importable from the cwd either
        done = subprocess.run([python, "-I", "-S", "-B", "-c", _IMPORTER, json.dumps(request)], cwd=cwd,
                              env=lambda_environment(function), capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip
    if done.returncode != 0:
        raise PackageError(f"the importer failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def without_module(code_directory: Path, relative: str, into: Path) -> Path:
    """A copy of the code asset without one module (``lifeline_agent/kube.py``), for the negative check."""
    copy = into / "code"
    shutil.copytree(code_directory, copy, symlinks=True)
    (copy / relative).unlink()
    return copy
