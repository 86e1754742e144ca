"""The disconnect drill: the three cases of DESIGN §1 with real ``kubectl``, before and after a service-link cut.

``run_drill`` runs ``kubectl get svc`` once per case with the link up, cuts the link, runs the calls again in
parallel threads (an extended cluster behind a cut link takes ~50 s to give up) and returns a ``DrillReport``
whose ``table()`` is plain text and valid Markdown, with kubectl's own messages. The caller restores the link:
the demo keeps it down to show the agent renewing offline.

``python -m lab drill`` runs it against a lab that is up, or with ``--kubeconfig CASE=PATH`` and
``--cut-command``/``--restore-command`` against a real Outpost during a planned disconnect test.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.admin_client import LabNotRunning, admin_request, read_env_file

TLS_HANDSHAKE_TIMEOUT = "Unable to connect to the server: net/http: TLS handshake timeout"
UNAUTHORIZED = "error: You must be logged in to the server (Unauthorized)"
WORKS = "works"  # the expectation "the kubernetes service is listed"
KUBECTL_TIMEOUT_SECONDS = 120.0


class DrillError(RuntimeError):
    """The drill cannot run: no kubectl, a missing kubeconfig, or a cut/restore command that failed."""


@dataclass(frozen=True)
class DrillCase:
    """One row of the drill: which kubeconfig, and what must happen once the link is cut.

    ``expected_after`` is ``WORKS`` or the start of kubectl's last error line (its own message).
    """

    key: str
    control_plane: str
    credential: str
    kubeconfig: Path
    expected_after: str


@dataclass
class KubectlCall:
    """One ``kubectl get svc`` and what it printed; times are epoch seconds."""

    case: str
    phase: str
    started: float
    ended: float
    returncode: int
    stdout: str
    stderr: str

    @property
    def lists_kubernetes_service(self) -> bool:
        return self.returncode == 0 and any(
            line.split()[:2] == ["kubernetes", "ClusterIP"] for line in self.stdout.splitlines()
        )

    @property
    def message(self) -> str:
        """kubectl's own words: the ``kubernetes`` service line, or the last line of its error output."""
        if self.lists_kubernetes_service:
            line = next(ln for ln in self.stdout.splitlines() if ln.split()[:1] == ["kubernetes"])
            return " ".join(line.split())
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"kubectl exited {self.returncode} without a message"

    def meets(self, expectation: str) -> bool:
        if expectation == WORKS:
            return self.lists_kubernetes_service
        return self.returncode != 0 and self.message.startswith(expectation)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.lists_kubernetes_service, "message": self.message}


@dataclass
class DrillRow:
    case: DrillCase
    before: KubectlCall
    after: KubectlCall

    @property
    def as_expected(self) -> bool:
        return self.before.meets(WORKS) and self.after.meets(self.case.expected_after)


@dataclass
class DrillReport:
    rows: list[DrillRow] = field(default_factory=list)
    cut_at: float = 0.0  # when the cut was ordered (epoch seconds)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.as_expected for row in self.rows)

    def table(self) -> str:
        return render_table(self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "cut_at": self.cut_at,
            "rows": [
                {
                    "case": row.case.key,
                    "control_plane": row.case.control_plane,
                    "credential": row.case.credential,
                    "expected_after": row.case.expected_after,
                    "before": row.before.message,
                    "after": row.after.message,
                    "as_expected": row.as_expected,
                }
                for row in self.rows
            ],
        }


def render_table(rows: Sequence[DrillRow]) -> str:
    """The drill's table: plain text that is also a Markdown table; unexpected results are marked."""
    header = ("case", "control plane", "credential", "result before the cut", "result after the cut")
    lines = [header]
    for number, row in enumerate(rows, start=1):
        before = f"`{row.before.message}`" + ("" if row.before.meets(WORKS) else " (UNEXPECTED)")
        after = f"`{row.after.message}`" + ("" if row.after.meets(row.case.expected_after) else " (UNEXPECTED)")
        lines.append((str(number), row.case.control_plane, row.case.credential, before, after))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def format_line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([format_line(lines[0]), separator, *(format_line(line) for line in lines[1:])])


# --- running kubectl -------------------------------------------------------------------------------------


def kubectl_path() -> Path:
    """The kubectl next to this Python (the pinned v1.37 wheel), never another one on PATH."""
    candidate = Path(sys.executable).parent / "kubectl"
    if not candidate.exists():
        raise DrillError(f"no kubectl next to {sys.executable}: run make install")
    return candidate


def run_kubectl(
    case: str,
    phase: str,
    kubeconfig: Path,
    *,
    kubectl: Path | None = None,
    cache_dir: Path | None = None,
    timeout: float = KUBECTL_TIMEOUT_SECONDS,
) -> KubectlCall:
    """``kubectl get svc -n default`` with ``kubeconfig``; never raises on a kubectl failure."""
    command = [str(kubectl or kubectl_path()), f"--kubeconfig={kubeconfig}", "get", "svc", "-n", "default"]
    if cache_dir is not None:
        command.insert(2, f"--cache-dir={cache_dir}")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    started = time.time()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        returncode, stdout = -1, _text(exc.stdout)
        stderr = _text(exc.stderr) + f"\nkubectl gave no answer in {timeout:g} s"
    except OSError as exc:
        raise DrillError(f"cannot run {command[0]}: {exc}") from exc
    return KubectlCall(case, phase, started, time.time(), returncode, stdout, stderr)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def run_drill(
    cases: Sequence[DrillCase],
    cut: Callable[[], None],
    *,
    log: Callable[[str], None] = print,
    on_call: Callable[[KubectlCall], None] | None = None,
    kubectl: Path | None = None,
    cache_dir: Path | None = None,
) -> DrillReport:
    """Every case before the cut, ``cut()``, every case again; the calls of each phase run in parallel.

    kubectl caches discovery per server in ``cache_dir`` (a fresh one by default), so the calls after the
    cut go the way they go for an operator who used the cluster before the outage.
    """
    for case in cases:
        if not case.kubeconfig.is_file():
            raise DrillError(f"case {case.key}: kubeconfig {case.kubeconfig} does not exist")
    kubectl = kubectl or kubectl_path()
    if not kubectl.is_file():
        raise DrillError(f"no kubectl at {kubectl}")
    with tempfile.TemporaryDirectory(prefix="lifeline-drill-kube-cache-") as fresh_cache:
        cache = cache_dir or Path(fresh_cache)
        before = _run_phase(cases, "before", log, on_call, kubectl, cache)
        log("cutting the service link")
        cut_at = time.time()
        cut()
        log("service link is DOWN; kubectl again for every case (a server that never answers takes 10-50 s)")
        time.sleep(seconds_until_fresh_tokens(max(call.ended for call in before.values()), time.time()))
        after = _run_phase(cases, "after", log, on_call, kubectl, cache)
    rows = [DrillRow(case, before[case.key], after[case.key]) for case in cases]
    return DrillReport(rows=rows, cut_at=cut_at)


def seconds_until_fresh_tokens(last_token_made_at: float, now: float) -> float:
    """How long to wait so that tokens made from now on differ from one made at ``last_token_made_at``.

    kube-apiserver caches every successful token authentication for 10 s, keyed by the token
    (``TokenSuccessCacheTTL``, no flag), and an EKS token is a URL presigned to the second
    (``X-Amz-Date``): a kubectl call made in the same second as one before the cut would present the
    same token and be let in from that cache without asking STS. The next whole second avoids it.
    """
    return max(0.0, math.floor(last_token_made_at) + 1 - now)


def _run_phase(
    cases: Sequence[DrillCase],
    phase: str,
    log: Callable[[str], None],
    on_call: Callable[[KubectlCall], None] | None,
    kubectl: Path,
    cache: Path,
) -> dict[str, KubectlCall]:
    def one(case: DrillCase) -> KubectlCall:
        call = run_kubectl(case.key, phase, case.kubeconfig, kubectl=kubectl, cache_dir=cache)
        log(f"  {phase} the cut | {case.control_plane} + {case.credential}: {call.message} "
            f"({call.ended - call.started:.1f} s)")  # fmt: skip
        if on_call is not None:
            on_call(call)
        return call

    with ThreadPoolExecutor(max_workers=max(1, len(cases)), thread_name_prefix=f"drill-{phase}") as pool:
        calls = list(pool.map(one, cases))
    return {call.case: call for call in calls}


# --- cut and restore -------------------------------------------------------------------------------------


def command_action(command: str, what: str) -> Callable[[], None]:
    """Run ``command`` (split like a shell would, run without one); DrillError if it fails."""
    argv = shlex.split(command)
    if not argv:
        raise DrillError(f"the {what} command is empty")

    def action() -> None:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DrillError(f"{what} command {command!r} failed: {exc}") from exc
        if done.returncode != 0:
            raise DrillError(f"{what} command {command!r} exited {done.returncode}: {done.stderr.strip()}")

    return action


# --- python -m lab drill ---------------------------------------------------------------------------------

CASE_KEYS = ("extended-iam", "local-iam", "local-x509")
LAB_ENV_KUBECONFIGS = {
    "extended-iam": "LAB_KUBECONFIG_EXTENDED_IAM",
    "local-iam": "LAB_KUBECONFIG_IAM",
    "local-x509": "LAB_KUBECONFIG_ADMIN",
}


def standard_cases(extended_iam: Path, local_iam: Path, local_x509: Path, x509_label: str) -> list[DrillCase]:
    """The three cases of DESIGN §1 with what the field experiment saw after the cut."""
    return [
        DrillCase("extended-iam", "Region (extended cluster)", "IAM token", extended_iam, TLS_HANDSHAKE_TIMEOUT),
        DrillCase("local-iam", "Outpost (local cluster)", "IAM token", local_iam, UNAUTHORIZED),
        DrillCase("local-x509", "Outpost (local cluster)", x509_label, local_x509, WORKS),
    ]


def _parse_kubeconfig_options(values: Sequence[str]) -> dict[str, Path]:
    chosen: dict[str, Path] = {}
    for value in values:
        key, sep, path = value.partition("=")
        if not sep or key not in CASE_KEYS or not path:
            raise DrillError(f"--kubeconfig {value!r}: expected CASE=PATH with CASE one of {', '.join(CASE_KEYS)}")
        chosen[key] = Path(path).expanduser()
    return chosen


def add_arguments(parser: Any) -> None:
    parser.add_argument("--kubeconfig", action="append", default=[], metavar="CASE=PATH",
                        help="kubeconfig of a case: extended-iam, local-iam or local-x509 (default: the running "
                             "lab's kubeconfig-extended-iam, kubeconfig-iam and kubeconfig-admin)")  # fmt: skip
    parser.add_argument("--cut-command", metavar="COMMAND",
                        help="command that cuts the service link (default: the running lab's `link down`)")
    parser.add_argument("--restore-command", metavar="COMMAND",
                        help="command that restores it (default: the running lab's `link up`)")
    parser.add_argument("--restore-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long every case may take to work again after the restore (default: 60)")
    parser.add_argument("--kubectl", type=Path, default=None, help="kubectl to run (default: the venv's v1.37)")


def lab_link_action(state_dir: Path, state: str) -> Callable[[], None]:
    def action() -> None:
        try:
            admin_request(state_dir, "POST", f"/link/{state}")
        except LabNotRunning as exc:
            raise DrillError(f"cannot set the lab's link {state}: {exc}") from exc

    return action


def _cases_and_actions(args: Any) -> tuple[list[DrillCase], Callable[[], None], Callable[[], None]]:
    chosen = _parse_kubeconfig_options(args.kubeconfig)
    lab_env = read_env_file(args.state_dir)
    missing = [key for key in CASE_KEYS if key not in chosen and LAB_ENV_KUBECONFIGS[key] not in lab_env]
    if missing:
        raise DrillError(f"no kubeconfig for {', '.join(missing)}: start the lab (python -m lab up --detach) "
                         "or pass --kubeconfig CASE=PATH")  # fmt: skip
    paths = {key: chosen.get(key) or Path(lab_env[LAB_ENV_KUBECONFIGS[key]]) for key in CASE_KEYS}
    if (args.cut_command is None) != (args.restore_command is None):
        raise DrillError("--cut-command and --restore-command go together")
    if args.cut_command is not None:
        cut = command_action(args.cut_command, "cut")
        restore = command_action(args.restore_command, "restore")
    else:
        cut, restore = lab_link_action(args.state_dir, "down"), lab_link_action(args.state_dir, "up")
    cases = standard_cases(paths["extended-iam"], paths["local-iam"], paths["local-x509"], "X.509 certificate")
    return cases, cut, restore


def drill_command(args: Any) -> int:
    """``python -m lab drill``: 0 every case gave the expected result, 1 one did not, 2 the drill could not run.

    Once the cut was attempted the link is restored, whatever happened.
    """
    try:
        cases, cut, restore = _cases_and_actions(args)
    except DrillError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 2
    cut_attempted = False

    def cut_once() -> None:
        nonlocal cut_attempted
        cut_attempted = True
        cut()

    report: DrillReport | None = None
    restored = True
    try:
        report = run_drill(cases, cut_once, log=_log, kubectl=args.kubectl)
        print(f"\n{report.table()}\n", flush=True)
    except DrillError as exc:
        print(f"drill: {exc}", file=sys.stderr)
    finally:
        if cut_attempted:
            restored = _restore(restore)
    if report is None or not restored:
        return 2
    again = [_until_it_works(case, args.kubectl, args.restore_timeout) for case in cases]
    for case, call in zip(cases, again, strict=True):
        _log(f"  link restored | {case.control_plane} + {case.credential}: {call.message}")
    verdict = report.passed and all(call.lists_kubernetes_service for call in again)
    _log("drill PASSED: every result was the expected one" if verdict else "drill FAILED: see UNEXPECTED above")
    return 0 if verdict else 1


def _restore(restore: Callable[[], None]) -> bool:
    _log("restoring the service link")
    try:
        restore()
    except DrillError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return False
    return True


def _until_it_works(case: DrillCase, kubectl: Path | None, timeout: float) -> KubectlCall:
    """After the restore: kubectl again until the service is listed (routes and STS may take a while)."""
    deadline = time.monotonic() + timeout
    while True:
        call = run_kubectl(case.key, "restored", case.kubeconfig, kubectl=kubectl)
        if call.lists_kubernetes_service or time.monotonic() > deadline:
            return call
        time.sleep(2)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
