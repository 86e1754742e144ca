"""``make demo``: the field experiment of DESIGN §1 reproduced, and Lifeline needing no preparation by hand.

``run_demo(DemoOptions(...)) -> DemoResult`` is the whole story; ``python -m lab demo`` prints it live and the
end-to-end test asserts the same result. Steps:

1. the lab comes up: Region (moto), service link, a local cluster (control plane on the Outpost) and an
   extended one (control plane in the Region, behind the link);
2. the Region side is deployed as a user deploys it, with the pinned CDK CLI (``cdk bootstrap`` + ``cdk deploy``)
   into the lab Region; the commands and the CLI's result lines are shown;
3. a CloudTrail ``CreateCluster`` event for the local cluster goes on EventBridge; the workflow runs (its states
   shown as they pass) and writes the secret ``lifeline/<cluster>`` and the RBAC;
4. ``lifeline-agent run`` starts as a separate process and bootstraps the offline kubeconfig;
5./6. the drill cuts the service link and runs the three cases with real kubectl; the table is printed;
7. while the link stays down the agent renews (at least twice) and kubectl through the offline kubeconfig,
   called every ~2 s from the cut on, never fails; an operator gets a personal kubeconfig with
   ``lifeline-agent grant`` and ``kubectl auth whoami`` through it names that person;
8. the link is restored, IAM works again, the agent stops, the lab is torn down; the timeline is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import agentkit
from lab.alarms import readiness_report
from lab.drill import (
    TLS_HANDSHAKE_TIMEOUT,
    UNAUTHORIZED,
    WORKS,
    DrillCase,
    DrillReport,
    KubectlCall,
    run_drill,
    run_kubectl,
)
from lab.timeline import Timeline

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT_DIR = REPO / ".lab" / "demo"
OFFLINE_LANE = "offline kubeconfig, every ~2 s"
GRANT_LANE = "personal kubeconfig (grant)"
GRANTED_USER = "alice"
DRILL_LANES = {"extended-iam": "case 1: extended + IAM", "local-iam": "case 2: local + IAM",
               "local-lifeline": "case 3: local + Lifeline"}  # fmt: skip
# Every AWS call of the demo names the lab's endpoint; anything that would not ends at a closed loopback port,
# never at a real AWS endpoint, the instance metadata service or the operator's own credentials.
NO_REAL_AWS = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}  # fmt: skip
WORKFLOW_TIMEOUT_SECONDS = 120.0
AGENT_READY_TIMEOUT_SECONDS = 60.0


class DemoError(RuntimeError):
    """A step of the demo could not run (the workflow failed, the agent never became ready, ...)."""


@dataclass
class DemoOptions:
    output_dir: Path = DEFAULT_OUTPUT_DIR
    lab: Any | None = None  # a started lab.lab.Lab to use (tests); None: start one and tear it down
    cluster_prefix: str = "demo"
    # The local control plane's signer cap. Certificates are backdated 5 min and renewed at 70-90 % of
    # The signer's cap: 30 s certificates are renewed 21-27 s apart (70-90 % of what is left of one when it
    # arrives; the 5-minute backdate is already spent), so the outage shows a few renewals in about a minute.
    signing_duration_seconds: int = 30
    min_offline_renewals: int = 2
    offline_call_interval: float = 2.0
    min_offline_calls: int = 10
    outage_timeout: float = 120.0  # longest wait for the renewals once the drill is done
    min_outage_seconds: float = 0.0  # keep the link down at least this long (the demo: long enough to watch)
    control_plane: str = "emulated"  # the lab's backend when the demo starts its own lab: emulated or real
    log: Callable[[str], None] | None = None


@dataclass
class DemoResult:
    drill: DrillReport
    workflow_status: str
    workflow_states: list[str]
    offline_calls: list[KubectlCall]
    renewals_offline: int
    iam_after_restore: KubectlCall | None
    agent_exit_code: int | None
    granted_as: str | None = None  # the user `kubectl auth whoami` printed through the personal kubeconfig
    timeline_json: Path | None = None
    timeline_png: Path | None = None
    seconds: float = 0.0
    region_shows_ready: bool = False
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def offline_failures(self) -> list[KubectlCall]:
        return [call for call in self.offline_calls if not call.lists_kubernetes_service]

    def evaluate(self, options: DemoOptions) -> dict[str, bool]:
        self.checks = {
            "workflow succeeded": self.workflow_status == "SUCCEEDED",
            "the Region showed the cluster ready before the cut": self.region_shows_ready,
            "drill results as expected": self.drill.passed,
            f"at least {options.min_offline_renewals} renewals with the link down":
                self.renewals_offline >= options.min_offline_renewals,
            f"at least {options.min_offline_calls} kubectl calls through the offline kubeconfig":
                len(self.offline_calls) >= options.min_offline_calls,
            "zero failed kubectl calls through the offline kubeconfig": not self.offline_failures,
            "IAM works again after the restore":
                self.iam_after_restore is not None and self.iam_after_restore.lists_kubernetes_service,
            "agent stopped cleanly": self.agent_exit_code == 0,
            f"with the link down, a grant for {GRANTED_USER} works as lifeline-user:{GRANTED_USER}":
                self.granted_as == f"lifeline-user:{GRANTED_USER}",
        }  # fmt: skip
        return self.checks

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


class Progress:
    """Plain timestamped lines: ``[09:41:07 +12.3s] message``."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self.started = time.monotonic()
        self._write = write or (lambda line: print(line, flush=True))
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - self.started:5.1f}s] {message}"
        with self._lock:
            self._write(line)


# --- step 1: the lab -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _lab_for(options: DemoOptions, log: Progress) -> Iterator[Any]:
    if options.lab is not None:
        yield options.lab
        return
    from lab.lab import Lab

    lab = Lab(options.output_dir / "lab", activation_delay=1.0, control_plane=options.control_plane)
    log(f"lab control plane: {lab.control_plane_backend}")
    lab.start()
    try:
        yield lab
    finally:
        log("tearing the lab down")
        lab.stop()


def _workflow_identity(lab: Any) -> str:
    """The identity the lab's Lambda functions run as: moto answers their (unknown) access key with it."""
    import boto3

    sts = boto3.client("sts", endpoint_url=lab.region_url, region_name=lab.region.name,
                       aws_access_key_id="lambda-role-access-key",
                       aws_secret_access_key="lambda-role-secret-key")  # noqa: S106 - a lab placeholder
    return str(sts.get_caller_identity()["Arn"])


def _map_workflow_role(lab: Any, cluster: str, identity: str) -> None:
    """The cluster creator maps the Lifeline workflow's role as admin (docs: clusters created outside Lifeline)."""
    from kubernetes import client

    entry = [{"userarn": identity, "username": "lifeline-workflow", "groups": ["system:masters"]}]
    with lab.kubernetes_api_client(cluster) as api_client:
        client.CoreV1Api(api_client).create_namespaced_config_map(
            "kube-system",
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name="aws-auth", namespace="kube-system"),
                               data={"mapUsers": json.dumps(entry)}),
        )  # fmt: skip


# --- steps 2 and 3: the Region workflow --------------------------------------------------------------------


def _cloudtrail_create_cluster(lab: Any, cluster: Any, event_id: str) -> dict[str, Any]:
    return {
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "arn": lab.creator.arn, "accountId": lab.region.account_id},
        "eventSource": "eks.amazonaws.com",
        "eventName": "CreateCluster",
        "awsRegion": lab.region.name,
        "eventID": event_id,
        "requestParameters": {
            "name": cluster.name,
            "version": cluster.kubernetes_version,
            "roleArn": "arn:aws:iam::123456789012:role/lab-eks-cluster-role",
            "resourcesVpcConfig": {"subnetIds": ["subnet-0a1b2c3d4e5f60718"], "endpointPrivateAccess": True},
            "outpostConfig": {"outpostArns": list(cluster.outpost_arns), "controlPlaneInstanceType": "m5d.large"},
        },
        "responseElements": {"cluster": {"name": cluster.name, "status": "CREATING"}},
        "eventType": "AwsApiCall",
        "managementEvent": True,
    }


def _execution_for(lab: Any, event_id: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for delivery in lab.region.delivered_events():
            if delivery["input"].get("detail", {}).get("eventID") == event_id:
                return str(delivery["executionArn"])
        time.sleep(0.1)
    raise DemoError("EventBridge started no execution for the CloudTrail event (is the trigger rule deployed?)")


def _follow_execution(lab: Any, arn: str, log: Progress, timeline: Timeline) -> tuple[str, list[str]]:
    """Print each state as it is entered; return the execution's status and the states in order."""
    sfn = lab.client("stepfunctions")
    seen, states = 0, []
    deadline = time.monotonic() + WORKFLOW_TIMEOUT_SECONDS
    while True:
        status = sfn.describe_execution(executionArn=arn)["status"]
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        for event in events[seen:]:
            name = event.get("stateEnteredEventDetails", {}).get("name")
            if name:
                states.append(name)
                timeline.workflow_state(name, event["timestamp"].timestamp())
                log(f"  workflow state: {name}")
            elif event["type"] in ("ExecutionFailed", "ExecutionSucceeded", "ExecutionTimedOut"):
                details = event.get("executionFailedEventDetails", {})
                log(f"  workflow {event['type']} {details.get('error', '')} {details.get('cause', '')}".rstrip())
        seen = len(events)
        if status != "RUNNING":
            return status, states
        if time.monotonic() > deadline:
            raise DemoError(f"the workflow is still running after {WORKFLOW_TIMEOUT_SECONDS:g} s: {arn}")
        time.sleep(0.3)


def _provision_offline_access(lab: Any, cluster: Any, log: Progress, timeline: Timeline) -> tuple[str, list[str]]:
    from lab.deploy import lab_deployment

    timeline.phase("cdk bootstrap + deploy")
    log("step 2: deploying the Region side as a user does, with the pinned CDK CLI, into the lab Region")
    deployed = lab_deployment(lab, list(cluster.outpost_arns))
    log("  in the repository, with the lab cluster creator's keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY:")
    for run in deployed.cli_runs:
        log(f"  $ {run.shown}")
        for line in run.result_lines:
            log(f"    {line}")
        log(f"    ({run.seconds:.1f} s)")
    log(f"  stack {deployed.stack_name}: state machine {deployed.state_machine_arn.rsplit(':', 1)[-1]}, "
        f"{len(deployed.functions)} Lambda functions (deployed code + layer), "
        f"rules {', '.join(deployed.rules.values())}; CLI output in {lab.state_dir / 'cdk'}")

    timeline.phase("CloudTrail event -> workflow")
    log(f"step 3: CloudTrail CreateCluster event for local cluster {cluster.name} -> EventBridge")
    event_id = str(uuid.uuid4())
    response = lab.client("events").put_events(Entries=[{
        "Source": "aws.eks", "DetailType": "AWS API Call via CloudTrail",
        "Detail": json.dumps(_cloudtrail_create_cluster(lab, cluster, event_id)),
    }])  # fmt: skip
    if response["FailedEntryCount"]:
        raise DemoError(f"EventBridge refused the event: {response['Entries']}")
    arn = _execution_for(lab, event_id)
    log(f"  the trigger rule started execution {arn.rsplit(':', 1)[-1]}")
    status, states = _follow_execution(lab, arn, log, timeline)
    log(f"  workflow {status}: {len(states)} states")
    if status == "SUCCEEDED":
        secret = lab.client("secretsmanager").describe_secret(SecretId=f"lifeline/{cluster.name}")
        log(f"  secret {secret['Name']} (KMS key {secret.get('KmsKeyId', '?').rsplit('/', 1)[-1]}); "
            "in-cluster: ClusterRoleBindings lifeline-breakglass, lifeline-operators, lifeline-csr-requester, aws-auth "
            "entry for the agent")
    return status, states


# --- step 4: the agent, a separate process -----------------------------------------------------------------


def _agent_script(name: str = "lifeline-agent") -> Path:
    candidate = Path(sys.executable).parent / name
    if not candidate.exists():
        raise DemoError(f"{name} is not installed next to {sys.executable}: run make install")
    return candidate


def write_agent_config(lab: Any, directory: Path, cluster: str) -> Path:
    """A lab agent configuration: the Region through the service link, short probes and back-off."""
    return agentkit.write_config(lab, directory, [cluster], region=lab.region.name, host_id="outpost-demo-host-1",
                                 certificate_lifetime="10m", probe_interval="1s", readiness_interval="10s")  # fmt: skip


class AgentProcess(agentkit.AgentProcess):
    """``lifeline-agent run`` with the agent principal's keys in its environment; JSON logs in a file."""

    def __init__(self, lab: Any, config: Path, log_path: Path) -> None:
        _agent_script()
        super().__init__(lab, config, log_path, env=agentkit.agent_env(lab, region=lab.region.name, sdk_endpoint=False))

    def status(self, *, as_json: bool = True) -> Any:
        done = agentkit.run_once(self.lab, self.config, "status", *(["--json"] if as_json else []), timeout=30,
                                 env=self.env)  # fmt: skip
        if not as_json:
            return done.stdout
        try:
            return json.loads(done.stdout or "[]")
        except ValueError:
            return []

    def wait_ready(self, timeout: float = AGENT_READY_TIMEOUT_SECONDS) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DemoError(f"lifeline-agent exited {self.process.returncode} before it was ready")
            documents = self.status()
            if documents and all(d.get("state") == "ready" for d in documents):
                return dict(documents[0])
            time.sleep(0.3)
        raise DemoError(f"lifeline-agent was not ready after {timeout:g} s: {self.status()}")


class CertificateWatcher(threading.Thread):
    """Notices each certificate the agent installs in the offline kubeconfig (serial, validity, when)."""

    def __init__(self, kubeconfig: Path, timeline: Timeline, log: Progress) -> None:
        super().__init__(name="demo-certificates", daemon=True)
        self.kubeconfig, self.timeline, self.log = kubeconfig, timeline, log
        self.installed: list[tuple[str, float, float]] = []  # (serial, installed at, notAfter)
        self._stop_event = threading.Event()

    def _current(self) -> tuple[str, float, float] | None:
        import base64

        from lifeline_agent.keys import CertificateError, parse_certificate
        from lifeline_agent.kubeconfig import load_kubeconfig

        try:
            config = load_kubeconfig(self.kubeconfig.read_bytes())
            certificate = parse_certificate(base64.b64decode(config["users"][0]["user"]["client-certificate-data"]))
        except (OSError, ValueError, KeyError, IndexError, CertificateError):
            return None
        return f"{certificate.certificate.serial_number:x}", certificate.not_before, certificate.not_after

    def poll(self) -> None:
        current = self._current()
        if current is None or (self.installed and self.installed[-1][0] == current[0]):
            return
        serial, not_before, not_after = current
        now = time.time()
        self.installed.append((serial, now, not_after))
        self.timeline.certificate(serial, not_before, not_after, now)
        until = time.strftime("%H:%M:%S", time.localtime(not_after))
        what = "first certificate" if len(self.installed) == 1 else f"renewal #{len(self.installed) - 1}"
        self.log(f"  agent installed a new kubeconfig ({what}): serial {serial[:12]}..., valid until {until}")

    def renewals_since(self, when: float) -> int:
        return sum(1 for _, installed, _ in self.installed[1:] if installed >= when)

    def run(self) -> None:
        while not self._stop_event.wait(0.25):
            self.poll()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


class OfflineKubectlLoop(threading.Thread):
    """``kubectl get svc`` through the offline kubeconfig every ``interval`` seconds until stopped."""

    def __init__(self, kubeconfig: Path, interval: float, timeline: Timeline, log: Progress) -> None:
        super().__init__(name="demo-offline-kubectl", daemon=True)
        self.kubeconfig, self.interval, self.timeline, self.log = kubeconfig, interval, timeline, log
        self.calls: list[KubectlCall] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            call = run_kubectl("offline", "outage", self.kubeconfig, timeout=30)
            self.calls.append(call)
            self.timeline.kubectl_call(OFFLINE_LANE, call.started, call.ended, call.lists_kubernetes_service,
                                       call.message)  # fmt: skip
            if not call.lists_kubernetes_service:
                self.log(f"  OFFLINE KUBECONFIG FAILED: {call.message}")
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=40)


# --- the whole story ---------------------------------------------------------------------------------------


def _drill_cases(extended_iam: Path, local_iam: Path, offline: Path) -> list[DrillCase]:
    return [
        DrillCase("extended-iam", "Region (extended cluster)", "IAM (`get-token`)", extended_iam,
                  TLS_HANDSHAKE_TIMEOUT),
        DrillCase("local-iam", "Outpost (local cluster)", "IAM (`get-token`)", local_iam, UNAUTHORIZED),
        DrillCase("local-lifeline", "Outpost (local cluster)", "Lifeline (X.509 from the agent)", offline, WORKS),
    ]  # fmt: skip


def run_demo(options: DemoOptions) -> DemoResult:
    """The whole story; ``result.passed`` only if every outcome was the expected one."""
    log = Progress(options.log)
    timeline = Timeline()
    output = options.output_dir
    output.mkdir(parents=True, exist_ok=True)
    for leftover in ("agent", "kubeconfigs", "kube-cache", "lab"):  # a previous run's state and kubeconfigs
        shutil.rmtree(output / leftover, ignore_errors=True)
    result: DemoResult | None = None
    timeline.phase("lab up")
    log("step 1: the lab comes up: Region (moto), service link, EKS local and extended control planes")
    with _lab_for(options, log) as lab:
        timeline.link_state("up" if lab.link.is_up else "down")
        local = lab.create_local_cluster(f"{options.cluster_prefix}-local")
        extended = lab.create_extended_cluster(f"{options.cluster_prefix}-extended")
        log(f"  Region {lab.region_url}; Region through the service link {lab.outpost_region_url}")
        log(f"  local cluster {local.name}: control plane on the Outpost at {local.endpoint}")
        log(f"  extended cluster {extended.name}: control plane in the Region, via the link at {extended.endpoint}")
        identity = _workflow_identity(lab)
        _map_workflow_role(lab, local.name, identity)
        log(f"  the cluster creator maps the Lifeline workflow's role in aws-auth ({identity})")

        workflow_status, workflow_states = _provision_offline_access(lab, local, log, timeline)
        if workflow_status != "SUCCEEDED":
            raise DemoError(f"the workflow ended {workflow_status}; see the states above")

        timeline.phase("agent starts")
        log("step 4: lifeline-agent run starts as a separate process (lab config, short certificates)")
        lab.control_plane(local.name).set_signing_duration(options.signing_duration_seconds)
        agent_dir = output / "agent"
        config = write_agent_config(lab, agent_dir, local.name)
        offline_kubeconfig = agent_dir / "state" / local.name / "kubeconfig"
        watcher = CertificateWatcher(offline_kubeconfig, timeline, log)
        agent = AgentProcess(lab, config, agent_dir / "agent.log")
        offline_loop = OfflineKubectlLoop(offline_kubeconfig, options.offline_call_interval, timeline, log)
        agent_exit: int | None = None
        try:
            watcher.start()
            ready = agent.wait_ready()
            watcher.poll()
            log(f"  agent ready: offline kubeconfig {ready.get('kubeconfig_path')}")
            log("  the Region sees it: the agent reports its readiness to CloudWatch while the link is up")
            outpost_id = local.outpost_arns[0].rsplit("/", 1)[-1]
            region = readiness_report(lab.client("cloudwatch"), local.name, outpost_id, since=agent.started_at)
            for line in region.lines:
                log(f"    {line}")
            kubeconfigs = output / "kubeconfigs"
            kubeconfigs.mkdir(mode=0o700, exist_ok=True)
            cases = _drill_cases(
                lab.iam_kubeconfig(extended.name, path=kubeconfigs / "extended-iam.yaml"),
                lab.iam_kubeconfig(local.name, path=kubeconfigs / "local-iam.yaml"),
                offline_kubeconfig,
            )

            def cut() -> None:
                lab.link.cut()
                timeline.link_state("down")
                timeline.phase("link cut")
                offline_loop.start()

            def record(call: KubectlCall) -> None:
                timeline.kubectl_call(DRILL_LANES[call.case], call.started, call.ended,
                                      call.lists_kubernetes_service, call.message)  # fmt: skip

            log("steps 5-6: the drill: kubectl get svc for the three cases, then the service link is cut")
            drill = run_drill(cases, cut, log=log, on_call=record, cache_dir=output / "kube-cache")
            print_block(log, drill.table())

            log(f"step 7: the link stays down (at least {options.min_outage_seconds:g} s) until the agent renewed "
                f"{options.min_offline_renewals}x offline (kubectl through the offline kubeconfig every "
                f"{options.offline_call_interval:g} s)")  # fmt: skip
            granted_as = _grant_during_outage(agent, local.name, output / "kubeconfigs", timeline, log)
            _wait_outage(watcher, offline_loop, drill.cut_at, options, log)
            print_block(log, agent.status(as_json=False).rstrip())

            timeline.phase("link restored")
            log("step 8: restoring the service link")
            lab.link.restore()
            timeline.link_state("up")
            offline_loop.stop()
            renewals = watcher.renewals_since(drill.cut_at)
            iam = run_kubectl("local-iam", "restored", cases[1].kubeconfig, cache_dir=output / "kube-cache")
            record(iam)
            log(f"  local + IAM after the restore: {iam.message}")
        finally:
            if offline_loop.is_alive():
                offline_loop.stop()
            with contextlib.suppress(Exception):
                lab.link.restore()
            agent_exit = agent.stop()
            watcher.stop()
        log(f"  lifeline-agent stopped (exit {agent_exit}); its log: {agent_dir / 'agent.log'}")
        result = DemoResult(drill=drill, workflow_status=workflow_status, workflow_states=workflow_states,
                            offline_calls=list(offline_loop.calls), renewals_offline=renewals,
                            iam_after_restore=iam, agent_exit_code=agent_exit,
                            granted_as=granted_as, region_shows_ready=region.shows_ready)  # fmt: skip
    timeline.phase("lab down")
    result.evaluate(options)
    result.timeline_json, result.timeline_png = timeline.write(output)
    result.seconds = time.monotonic() - log.started
    _write_summary(result, output)
    log(f"timeline: {result.timeline_png} (data: {result.timeline_json})")
    for check, ok in result.checks.items():
        log(f"  {'PASS' if ok else 'FAIL'}  {check}")
    log(f"demo {'PASSED' if result.passed else 'FAILED'} in {result.seconds:.0f} s")
    return result


def _grant_during_outage(agent: AgentProcess, cluster: str, directory: Path, timeline: Timeline,
                         log: Progress) -> str | None:  # fmt: skip
    """``lifeline-agent grant`` for an operator, then ``kubectl auth whoami`` through the personal kubeconfig;
    returns the user the API server saw (None when either failed)."""
    import base64
    import subprocess

    from lifeline_agent.keys import parse_certificate
    from lifeline_agent.kubeconfig import load_kubeconfig

    output = directory / f"{GRANTED_USER}.kubeconfig"
    output.unlink(missing_ok=True)
    log(f"  an operator asks for a personal kubeconfig: lifeline-agent grant {cluster} --user {GRANTED_USER} "
        f"--ttl 10m --output {output}")  # fmt: skip
    started = time.time()
    granted = agentkit.run_once(agent.lab, agent.config, "grant", cluster, "--user", GRANTED_USER, "--ttl", "10m",
                                "--output", str(output), timeout=60, env=agent.env)  # fmt: skip
    if granted.returncode != 0:
        log(f"  GRANT FAILED (exit {granted.returncode}): {granted.stderr.strip().splitlines()[-1:]}")
        timeline.kubectl_call(GRANT_LANE, started, time.time(), False, f"grant failed: exit {granted.returncode}")
        return None
    log(f"  {granted.stdout.strip()}")
    user = load_kubeconfig(output.read_bytes())["users"][0]["user"]
    certificate = parse_certificate(base64.b64decode(user["client-certificate-data"]))
    timeline.grant(f"lifeline-user:{GRANTED_USER}", f"{certificate.certificate.serial_number:x}",
                   certificate.not_before, certificate.not_after, time.time())  # fmt: skip
    asked = time.time()
    whoami = subprocess.run([str(agentkit.KUBECTL), f"--kubeconfig={output}", "auth", "whoami", "-o", "json"],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    try:
        info = json.loads(whoami.stdout)["status"]["userInfo"]
        seen, groups = str(info["username"]), ", ".join(info.get("groups") or ())
    except (ValueError, KeyError, TypeError):
        seen, groups = None, ""
    message = f"kubectl auth whoami: {seen} in {groups}" if seen else f"kubectl auth whoami failed: {whoami.stderr}"
    timeline.kubectl_call(GRANT_LANE, asked, time.time(), seen is not None, message[:120])
    log(f"  {message.strip()}")
    return seen


def _wait_outage(watcher: CertificateWatcher, loop: OfflineKubectlLoop, cut_at: float, options: DemoOptions,
                 log: Progress) -> None:
    deadline = time.monotonic() + options.outage_timeout
    next_report = time.monotonic()
    while time.monotonic() < deadline:
        if (watcher.renewals_since(cut_at) >= options.min_offline_renewals
                and len(loop.calls) >= options.min_offline_calls
                and time.time() - cut_at >= options.min_outage_seconds):
            break
        if time.monotonic() >= next_report and loop.calls:
            next_report = time.monotonic() + 10
            last = loop.calls[-1]
            log(f"  link down {time.time() - cut_at:3.0f} s | offline kubeconfig: {len(loop.calls)} kubectl calls, "
                f"{sum(not c.lists_kubernetes_service for c in loop.calls)} failed; last: {last.message}")  # fmt: skip
        time.sleep(0.25)
    calls = list(loop.calls)
    failed = sum(not call.lists_kubernetes_service for call in calls)
    log(f"  with the link down: {watcher.renewals_since(cut_at)} renewals, {len(calls)} kubectl calls through the "
        f"offline kubeconfig, {failed} failed")  # fmt: skip


def print_block(log: Progress, text: str) -> None:
    log("")
    for line in text.splitlines():
        log(line)
    log("")


def _write_summary(result: DemoResult, output: Path) -> None:
    from lifeline_agent.kubeconfig import atomic_write

    summary = {
        "passed": result.passed,
        "seconds": round(result.seconds, 1),
        "checks": result.checks,
        "drill": result.drill.as_dict(),
        "table": result.drill.table(),
        "workflow": {"status": result.workflow_status, "states": result.workflow_states},
        "renewals_offline": result.renewals_offline,
        "offline_calls": len(result.offline_calls),
        "offline_failures": [call.message for call in result.offline_failures],
    }
    atomic_write(output / "summary.json", json.dumps(summary, indent=2).encode("utf-8"), mode=0o644)
    atomic_write(output / "table.md", (result.drill.table() + "\n").encode("utf-8"), mode=0o644)


# --- python -m lab demo ------------------------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where the timeline, table, agent state and logs go (default: <state-dir>/demo)")
    parser.add_argument("--signing-duration", type=int, default=DemoOptions.signing_duration_seconds,
                        metavar="SECONDS", help="the local control plane's certificate lifetime cap (default: "
                        f"{DemoOptions.signing_duration_seconds}; certificates are backdated 5 minutes)")  # fmt: skip
    parser.add_argument("--min-outage", type=float, default=60.0, metavar="SECONDS",
                        help="keep the service link down at least this long (default: 60)")
    parser.add_argument("--control-plane", choices=("emulated", "real"), default="emulated",
                        help="the lab's control plane: emulated (default) or real kube-apiserver v1.28.7 from "
                        "../shared/kube")  # fmt: skip


def demo_command(args: Any) -> int:
    """``python -m lab demo``: exit 0 only if every outcome was the expected one.

    The terminal shows the progress lines only: everything else this process prints (moto's warnings, the
    lab's servers) goes to ``<output>/region.log``; the Lambda functions run in sandbox processes whose output is
    in ``<lab state>/lambda/logs/<function>.log``, the CDK CLI's in ``<lab state>/cdk``.
    """
    from lab.controlplane.real import RealControlPlaneUnavailable

    output = (args.output_dir or args.state_dir / "demo").resolve()
    output.mkdir(parents=True, exist_ok=True)
    os.environ.update(NO_REAL_AWS)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(output / "region.log", "wb") as region_log:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(region_log.fileno(), 1)
        os.dup2(region_log.fileno(), 2)
        try:
            options = DemoOptions(output_dir=output, signing_duration_seconds=args.signing_duration,
                                  min_outage_seconds=args.min_outage, control_plane=args.control_plane,
                                  log=lambda line: print(line, file=terminal, flush=True))  # fmt: skip
            result = run_demo(options)
        except DemoError as exc:
            print(f"demo FAILED: {exc} (more in {output / 'region.log'})", file=terminal, flush=True)
            return 1
        except RealControlPlaneUnavailable as exc:
            print(f"demo: --control-plane real: {exc}", file=terminal, flush=True)
            return 2
        except BaseException:
            traceback.print_exc(file=terminal)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()
    return 0 if result.passed else 1
