"""What the agent's runtime imports: botocore but not boto3, its own HTTPS client but not the Kubernetes client."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from lifeline_agent import cli, daemon, fleet, reconcile
daemon.preload_libraries()
from lifeline_agent.region import aws_client
print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))
"""


def test_the_agent_loads_botocore_and_neither_boto3_nor_the_kubernetes_client() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(result.stdout))
    assert "botocore" in loaded and "cryptography" in loaded
    assert not loaded & {"boto3", "kubernetes", "requests"}
