"""``python -m lab``: run the lab and operate a running one.

A running lab serves a small admin HTTP API on loopback (``LAB_ADMIN_URL`` in ``<state-dir>/env``);
``status``, ``link`` and ``down`` talk to it. Add a subcommand with one ``add_<name>_command``
function that registers its parser and sets ``func``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lab.admin_client import LabNotRunning, admin_request

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO / ".lab"
LOCAL_CLUSTER = "lab-local"
EXTENDED_CLUSTER = "lab-extended"
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0


# --- the admin API (served by `up`) -------------------------------------------------------------------


def lab_status(lab: Any) -> dict[str, Any]:
    clusters = {}
    for name in lab.cluster_names():
        info = lab.describe_cluster(name)
        clusters[name] = {"kind": info.kind, "status": info.status, "endpoint": info.endpoint, "id": info.id}
    return {
        "pid": os.getpid(),
        "link": "up" if lab.link.is_up else "down",
        "region_url": lab.region_url,
        "outpost_region_url": lab.outpost_region_url,
        "state_dir": str(lab.state_dir),
        "clusters": clusters,
    }


class AdminServer:
    """``GET /status``, ``POST /link/down``, ``POST /link/up``, ``POST /shutdown`` on 127.0.0.1."""

    def __init__(self, lab: Any, on_shutdown: Callable[[], None]) -> None:
        self.lab = lab
        self.on_shutdown = on_shutdown
        handler = self._handler_class()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="lab-admin", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/status":
                    self._reply(200, lab_status(server.lab))
                else:
                    self._reply(404, {"error": f"no such resource {self.path}"})

            def do_POST(self) -> None:  # noqa: N802
                actions: dict[str, Callable[[], None]] = {
                    "/link/down": server.lab.link.cut,
                    "/link/up": server.lab.link.restore,
                    "/shutdown": server.on_shutdown,
                }
                action = actions.get(self.path)
                if action is None:
                    self._reply(404, {"error": f"no such action {self.path}"})
                    return
                action()
                self._reply(200, {"ok": True, "link": "up" if server.lab.link.is_up else "down"})

        return Handler


# --- state directory ------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(state_dir: Path) -> int | None:
    try:
        return int((state_dir / "lab.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


# --- up -------------------------------------------------------------------------------------------------


def write_lab_files(lab: Any, admin_url: str) -> dict[str, Path]:
    """``env``, ``kubeconfig-admin``, ``kubeconfig-iam``, ``kubeconfig-extended-iam``, ``ca.crt``."""
    from lifeline_agent.kubeconfig import atomic_write

    state = lab.state_dir
    files = {
        "kubeconfig-admin": lab.admin_kubeconfig(LOCAL_CLUSTER, path=state / "kubeconfig-admin"),
        "kubeconfig-iam": lab.iam_kubeconfig(LOCAL_CLUSTER, path=state / "kubeconfig-iam"),
        "kubeconfig-extended-iam": lab.iam_kubeconfig(EXTENDED_CLUSTER, path=state / "kubeconfig-extended-iam"),
    }
    ca_path = state / "ca.crt"
    atomic_write(ca_path, lab.describe_cluster(LOCAL_CLUSTER).ca_pem, mode=0o644)
    files["ca.crt"] = ca_path
    extra = {
        "LAB_ADMIN_URL": admin_url,
        "LAB_LOCAL_CLUSTER": LOCAL_CLUSTER,
        "LAB_EXTENDED_CLUSTER": EXTENDED_CLUSTER,
        "LAB_CA_FILE": str(ca_path),
        "LAB_KUBECONFIG_ADMIN": str(files["kubeconfig-admin"]),
        "LAB_KUBECONFIG_IAM": str(files["kubeconfig-iam"]),
        "LAB_KUBECONFIG_EXTENDED_IAM": str(files["kubeconfig-extended-iam"]),
    }
    files["env"] = lab.write_env_file(extra)
    return files


def run_foreground(args: argparse.Namespace) -> int:
    from lab.lab import Lab

    state_dir: Path = args.state_dir
    pid = _read_pid(state_dir)
    if pid is not None and pid != os.getpid() and _pid_alive(pid):
        print(f"a lab is already running in {state_dir} (pid {pid}); `python -m lab down` first", file=sys.stderr)
        return 1
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "env").unlink(missing_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    from lab.controlplane.real import RealControlPlaneUnavailable

    try:
        lab = Lab(state_dir, activation_delay=args.activation_delay, control_plane=args.control_plane)
    except RealControlPlaneUnavailable as exc:
        print(f"lab: --control-plane real: {exc}", file=sys.stderr)
        return 2
    lab.start()
    admin = AdminServer(lab, on_shutdown=stop.set)
    try:
        lab.create_local_cluster(LOCAL_CLUSTER)
        lab.create_extended_cluster(EXTENDED_CLUSTER)
        admin.start()
        (state_dir / "lab.pid").write_text(f"{os.getpid()}\n")
        files = write_lab_files(lab, admin.url)
        print_summary(lab, admin.url, files)
        sys.stdout.flush()
        stop.wait()
    finally:
        admin.stop()
        lab.stop()
        (state_dir / "env").unlink(missing_ok=True)
        (state_dir / "lab.pid").unlink(missing_ok=True)
    print("lab stopped")
    return 0


def print_summary(lab: Any, admin_url: str, files: dict[str, Path]) -> None:
    print(f"Lifeline lab is up (control plane: {lab.control_plane_backend})")
    print(f"  Region (moto)            {lab.region_url}")
    print(f"  Region via service link  {lab.outpost_region_url}")
    for name in lab.cluster_names():
        info = lab.describe_cluster(name)
        print(f"  {info.kind:<8} cluster {name:<14} {info.endpoint} ({info.status})")
    print(f"  admin API                {admin_url}")
    for label, path in files.items():
        print(f"  {label:<24} {path}")
    kubectl = REPO / ".venv" / "bin" / "kubectl"
    print(f"Use it: source {files['env']}; {kubectl} --kubeconfig {files['kubeconfig-iam']} get svc")


def start_detached(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    pid = _read_pid(state_dir)
    if pid is not None and _pid_alive(pid):
        print(f"a lab is already running in {state_dir} (pid {pid})", file=sys.stderr)
        return 1
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "env").unlink(missing_ok=True)
    command = [sys.executable, "-m", "lab", "--state-dir", str(state_dir), "up",
               "--activation-delay", str(args.activation_delay), "--control-plane", args.control_plane]  # fmt: skip
    with open(state_dir / "lab.log", "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=REPO,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(f"the lab exited with {process.returncode}; see {state_dir / 'lab.log'}", file=sys.stderr)
            return 1
        with contextlib.suppress(LabNotRunning):
            status = admin_request(state_dir, "GET", "/status", timeout=5)
            (state_dir / "lab.pid").write_text(f"{process.pid}\n")
            print_status(status)
            print(f"lab running in the background (pid {process.pid}); log: {state_dir / 'lab.log'}")
            return 0
        time.sleep(0.2)
    process.terminate()
    print(f"the lab did not come up in {START_TIMEOUT_SECONDS:.0f}s; see {state_dir / 'lab.log'}", file=sys.stderr)
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    return start_detached(args) if args.detach else run_foreground(args)


def add_up_command(sub: Any) -> None:
    parser = sub.add_parser(
        "up",
        help="start the lab (Region, service link, clusters lab-local and lab-extended)",
        description="Start the Region (moto), the service link and two clusters: lab-local (EKS local cluster, "
        "control plane on the Outpost) and lab-extended (control plane in the Region). Writes env, "
        "kubeconfig-admin, kubeconfig-iam, kubeconfig-extended-iam and ca.crt into the state directory. "
        "Runs until Ctrl-C/SIGTERM unless --detach.",
    )
    parser.add_argument("--detach", action="store_true", help="run in the background; pid in <state-dir>/lab.pid")
    parser.add_argument("--activation-delay", type=float, default=2.0, metavar="SECONDS",
                        help="time from CreateCluster to ACTIVE (default: 2)")  # fmt: skip
    add_control_plane_argument(parser)
    parser.set_defaults(func=cmd_up)


def add_control_plane_argument(parser: Any) -> None:
    parser.add_argument("--control-plane", choices=("emulated", "real"), default="emulated",
                        help="emulated: the lab's own API server (default, needs only PyPI); real: etcd + "
                        "kube-apiserver + kube-controller-manager v1.28.7 from ../shared/kube")  # fmt: skip


# --- status, link, down ------------------------------------------------------------------------------


def print_status(status: dict[str, Any]) -> None:
    print(f"lab pid {status['pid']}  service link: {status['link'].upper()}")
    print(f"  Region                   {status['region_url']}")
    print(f"  Region via service link  {status['outpost_region_url']}")
    for name, cluster in sorted(status["clusters"].items()):
        print(f"  {cluster['kind']:<8} cluster {name:<14} {cluster['endpoint']} ({cluster['status']})")


def cmd_status(args: argparse.Namespace) -> int:
    try:
        status = admin_request(args.state_dir, "GET", "/status")
    except LabNotRunning as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print_status(status)
    return 0


def add_status_command(sub: Any) -> None:
    parser = sub.add_parser("status", help="show the running lab: link state, Region URLs, clusters")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.set_defaults(func=cmd_status)


def cmd_link(args: argparse.Namespace) -> int:
    try:
        result = admin_request(args.state_dir, "POST", f"/link/{args.state}")
    except LabNotRunning as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"service link {result['link']}")
    return 0


def add_link_command(sub: Any) -> None:
    parser = sub.add_parser(
        "link",
        help="cut (down) or restore (up) the Outpost's service link",
        description="down: connections through the link hang (like a fibre cut); up: they work again.",
    )
    parser.add_argument("state", choices=("down", "up"))
    parser.set_defaults(func=cmd_link)


def cmd_down(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    pid = _read_pid(state_dir)
    try:
        admin_request(state_dir, "POST", "/shutdown")
    except LabNotRunning as exc:
        if pid is None or not _pid_alive(pid):
            print(str(exc), file=sys.stderr)
            (state_dir / "lab.pid").unlink(missing_ok=True)
            return 1
        os.kill(pid, signal.SIGTERM)
    if pid is not None:
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            print(f"lab (pid {pid}) did not stop in {STOP_TIMEOUT_SECONDS:.0f}s", file=sys.stderr)
            return 1
    print("lab stopped")
    return 0


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def add_down_command(sub: Any) -> None:
    parser = sub.add_parser("down", help="stop the running lab")
    parser.set_defaults(func=cmd_down)


def add_demo_command(sub: Any) -> None:
    from lab import demo

    parser = sub.add_parser(
        "demo",
        help="the whole story: lab, Region workflow, agent, link cut, drill, offline renewals, restore",
        description="Starts its own lab, runs the CloudTrail -> workflow -> agent story, cuts the service link, "
        "runs the drill and keeps the link down while the agent renews, then restores it and tears the lab down. "
        "Writes timeline.png/json, table.md and summary.json. Exit 0 only if every outcome was the expected one.",
    )
    demo.add_arguments(parser)
    parser.set_defaults(func=demo.demo_command)


def add_drill_command(sub: Any) -> None:
    from lab import drill

    parser = sub.add_parser(
        "drill",
        help="the disconnect drill alone: three cases with kubectl before and after a link cut",
        description="Runs kubectl get svc for extended+IAM, local+IAM and local+X.509 kubeconfigs, cuts the link, "
        "runs them again, prints the table and restores the link. Defaults: the running lab's kubeconfigs and "
        "link; for a real Outpost pass --kubeconfig CASE=PATH and --cut-command/--restore-command.",
    )
    drill.add_arguments(parser)
    parser.set_defaults(func=drill.drill_command)


COMMANDS: list[Callable[[Any], None]] = [add_up_command, add_status_command, add_link_command, add_down_command,
                                         add_demo_command, add_drill_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab",
        description="The Lifeline lab: an emulated AWS Region, Outpost service link and EKS clusters on loopback.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where the lab keeps env, kubeconfigs, pid and log (default: {DEFAULT_STATE_DIR})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.state_dir = args.state_dir.resolve()
    return int(args.func(args))
