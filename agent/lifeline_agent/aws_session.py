"""The botocore session the agent's AWS clients come from, with a small copy of botocore's endpoint data.

botocore reads its whole ``endpoints.json`` (1.2 MB, every service of every partition) for the first client
of a session and keeps it: ~8 MiB of the agent's resident memory for four services (bench/footprint.py).
``aws_data/endpoints.json`` is that file with only :data:`SERVICES` left in each partition (made and checked
against the installed botocore by ``tests/unit/test_agent_aws_session.py``), put first on the session's
``data_path``, the documented way to give botocore other data. botocore then resolves endpoints from that
copy's entries (botocore's legacy resolver, as for any customised endpoint data), which give the same URLs and
signing regions as its builtin rules in every region, with and without FIPS (the test compares them). With
dual-stack endpoints asked for they differ, so the session keeps botocore's own data then.

The same goes for service models: CloudWatch's (``cloudwatch/2010-08-01/service-2.json``, 59 operations with
their documentation) costs ~3 MiB once loaded, for the one operation the agent calls. ``aws_data`` holds it cut
to :data:`OPERATIONS` and their shapes, without documentation (made and checked by the same test); botocore
reads it first and everything else of the service (endpoint rules, paginators) from its own data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SERVICES = ("eks", "monitoring", "secretsmanager", "sts")  # endpoint prefixes: CloudWatch's is "monitoring"
OPERATIONS = {"cloudwatch": ("PutMetricData",)}  # service models cut to these operations, in DATA_DIR
DATA_DIR = Path(__file__).resolve().with_name("aws_data")


def new_session() -> Any:
    """A botocore session (standard credential chain and configuration) that reads :data:`DATA_DIR` first."""
    import botocore.session

    session = botocore.session.get_session()
    if not session.get_config_variable("use_dualstack_endpoint"):
        configured = session.get_config_variable("data_path")
        session.set_config_variable("data_path", os.pathsep.join(filter(None, [str(DATA_DIR), configured])))
    return session


def trimmed_endpoints(endpoints: dict[str, Any]) -> dict[str, Any]:
    """botocore's endpoint data with only :data:`SERVICES` in each partition."""
    partitions = [{**partition, "services": {name: entry for name, entry in partition["services"].items()
                                             if name in SERVICES}}
                  for partition in endpoints["partitions"]]  # fmt: skip
    return {**endpoints, "partitions": partitions}


def trimmed_service_model(model: dict[str, Any], operations: tuple[str, ...]) -> dict[str, Any]:
    """botocore's service model with only ``operations``, the shapes they use, and no documentation."""
    wanted = {name: model["operations"][name] for name in operations}
    shapes: dict[str, Any] = {}
    refs = [ref for op in wanted.values() for ref in [op.get("input"), op.get("output"), *op.get("errors", [])]]
    pending = [ref["shape"] for ref in refs if ref]
    while pending:
        name = pending.pop()
        if name in shapes:
            continue
        shape = shapes[name] = model["shapes"][name]
        refs = [*shape.get("members", {}).values(), shape.get("member"), shape.get("key"), shape.get("value")]
        pending += [ref["shape"] for ref in refs if ref]
    trimmed: dict[str, Any] = _undocumented({**model, "operations": wanted, "shapes": dict(sorted(shapes.items()))})
    return trimmed


def _undocumented(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _undocumented(v) for k, v in value.items() if k not in ("documentation", "documentationUrl")}
    if isinstance(value, list):
        return [_undocumented(item) for item in value]
    return value
