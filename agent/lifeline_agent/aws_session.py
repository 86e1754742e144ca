"""The botocore session the agent's AWS clients come from, with a small copy of botocore's endpoint data.

botocore reads its whole ``endpoints.json`` (1.2 MB, every service of every partition) for the first client
of a session and keeps it: ~8 MiB of the agent's resident memory for four services (bench/footprint.py).
``aws_data/endpoints.json`` is that file with only :data:`SERVICES` left in each partition (made and checked
against the installed botocore by ``tests/unit/test_agent_aws_session.py``), put first on the session's
``data_path``, the documented way to give botocore other data. botocore then resolves endpoints from that
copy's entries (botocore's legacy resolver, as for any customised endpoint data), which give the same URLs and
signing regions as its builtin rules in every region, with and without FIPS (the test compares them). With
dual-stack endpoints asked for they differ, so the session keeps botocore's own data then.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SERVICES = ("eks", "monitoring", "secretsmanager", "sts")  # endpoint prefixes: CloudWatch's is "monitoring"
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
