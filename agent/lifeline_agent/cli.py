"""``lifeline-agent``: the command line of the agent."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from lifeline_agent.config import DEFAULT_CONFIG_PATH, AgentConfig, ConfigError, check_state_dir, load_config
from lifeline_agent.contract import ContractError, validate_cluster_name

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NEEDS_LINK, EXIT_REVOKED = 0, 1, 2, 3, 4
EXIT_CODES = f"""exit codes:
  {EXIT_OK}  every cluster has a verified, current kubeconfig (state ready, or renewing with it still good)
  {EXIT_FAILED}  a cluster is failed, pending (no kubeconfig yet), untrusted (the secret's endpoint or CA is not
     what EKS reports: not followed), group-changed (the secret names another break-glass group) or in
     a state this version does not know; the message says why and the last good kubeconfig is kept.
     Also: no AWS credentials for get-token.
  {EXIT_USAGE}  bad command line or configuration (the message names the file and key), an unknown cluster
     or a cluster argument that is not a valid EKS cluster name
  {EXIT_NEEDS_LINK}  needs-link: a cluster needs the service link (no certificate yet, or it expired) and the
     link is down
  {EXIT_REVOKED}  revoked: the API server forbids the certificate: the lifeline-breakglass binding was deleted
With several clusters the first of {EXIT_FAILED}, {EXIT_REVOKED}, {EXIT_NEEDS_LINK} that applies is returned."""
# Every state but these is a failure, including states written by a newer agent.
_STATE_EXIT_CODES = {"ready": EXIT_OK, "renewing": EXIT_OK, "needs-link": EXIT_NEEDS_LINK, "revoked": EXIT_REVOKED}
_EXIT_PRECEDENCE = (EXIT_FAILED, EXIT_REVOKED, EXIT_NEEDS_LINK)

DESCRIPTION = """Keeps an offline (X.509 client certificate) kubeconfig current for EKS local clusters on
AWS Outposts, so that kubectl keeps working while the service link to the Region is down.
Kubeconfigs are written to <state_dir>/<cluster>/kubeconfig (default state_dir /var/lib/lifeline)."""


GRANT_DESCRIPTION = """Issues a personal kubeconfig for one person with the agent's current certificate, through the
CSR API, so it works with the service link down: CN=lifeline-user:<name>, O=<[grant] group> (default
lifeline:operators, bound by the Region workflow's ClusterRoleBinding lifeline-operators).
The key is made here; the certificate must not outlive --ttl; the kubeconfig is proven against the API
server (it must see that person), then written 0600 with the rights of the invoking user (the one behind
sudo: only where that user may create a file, never over an existing one) and recorded in
<state_dir>/<cluster>/grants.json. Needs write access to the cluster's state directory for that ledger:
run it as root, e.g. through a sudoers rule for the operators' group (docs/agent-install.md)."""
GRANT_EPILOG = f"""exit codes:
  {EXIT_OK}  the kubeconfig was issued, proven (the API server sees that person) and written
  {EXIT_FAILED}  it could not be issued or proven (the message says why); nothing was written
  {EXIT_USAGE}  bad command line: a name that is not a plain user name, a --ttl out of range, an --output that
     exists or that the invoking user may not create, an unknown cluster
  {EXIT_REVOKED}  the API server forbids the personal certificate: the lifeline-operators binding was deleted
Revoking: `kubectl delete clusterrolebinding lifeline-operators` revokes every personal grant at once; the
agent's own kubeconfig keeps working (it is bound by lifeline-breakglass)."""


class UsageError(Exception):
    """The command line names something that does not exist or is not valid (exit code 2)."""


class CommandFailed(Exception):
    """A command could not do its work; the message says why (exit code 1)."""


def _state_exit_code(states: list[str]) -> int:
    codes = {_STATE_EXIT_CODES.get(state, EXIT_FAILED) for state in states}
    return next((code for code in _EXIT_PRECEDENCE if code in codes), EXIT_OK)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), metavar="PATH",
                        help=f"agent configuration (TOML; default {DEFAULT_CONFIG_PATH})")  # fmt: skip
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="lifeline-agent", description=DESCRIPTION, epilog=EXIT_CODES,
                                     formatter_class=formatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", parents=[common], formatter_class=formatter, help="run as a service (systemd)",
                   description="Run as a service: one loop per cluster renews before the deadline, verifies "
                   "the kubeconfig, fails over between control-plane IPs; sd_notify READY/STATUS/WATCHDOG; "
                   "/healthz and /metrics on metrics_address. While the link is up, reports each cluster's "
                   "readiness to CloudWatch (namespace Lifeline) every readiness_interval; after each verified "
                   "install runs the cluster's post_install_hook, if any, in the background (bounded by "
                   "post_install_hook_timeout). Stops cleanly on SIGTERM. Logs JSON to stdout.",
                   epilog="exit codes: 0 after a clean stop, 2 on a configuration error")  # fmt: skip
    sub.add_parser("once", parents=[common], formatter_class=formatter, epilog=EXIT_CODES,
                   help="one pass over every cluster, then exit (the exit code says the outcome)",
                   description="One pass over every cluster: bootstrap, renew if due, verify; "
                   "max_concurrent_clusters at a time, each on its own (a failing or hanging cluster does not "
                   "hold up the others). Then, with the link up, one readiness report to CloudWatch, and a wait "
                   "for the post-install hooks of this pass (each at most its timeout). JSON logs go to stderr, a "
                   "table sorted by cluster to stdout.")  # fmt: skip
    status = sub.add_parser("status", parents=[common], formatter_class=formatter, epilog=EXIT_CODES,
                            help="show each cluster's state as the agent last recorded it",
                            description="Columns: cluster, state, certificate expiry, next renewal, last "
                            "verified, link, kubeconfig path. Reads the state directory; changes nothing.")  # fmt: skip
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    verify = sub.add_parser("verify", parents=[common], formatter_class=formatter, epilog=EXIT_CODES,
                            help="prove the offline kubeconfig works right now, using it alone",
                            description="Uses only the installed kubeconfig (no AWS call) to ask the API "
                            "server who it is and read the kubernetes service. Changes nothing.")  # fmt: skip
    verify.add_argument("cluster", nargs="?", help="one cluster (default: all configured)")
    grant = sub.add_parser("grant", parents=[common], formatter_class=formatter, epilog=GRANT_EPILOG,
                           help="issue a personal kubeconfig for a named person (works with the link down)",
                           description=GRANT_DESCRIPTION)
    grant.add_argument("cluster", help="the cluster (as in lifeline-agent status)")
    grant.add_argument("--user", required=True, metavar="NAME",
                       help="the person: a plain user name (like alice); system:, lifeline:, admin and root "
                       "are refused")  # fmt: skip
    grant.add_argument("--ttl", metavar="DURATION",
                       help="lifetime, like 30m or 1h: from 10m (the CSR API's minimum) to grant.max_ttl "
                       "(default and default maximum: 1h)")  # fmt: skip
    grant.add_argument("--output", metavar="PATH",
                       help="where to write it (default ./lifeline-<cluster>-<name>.kubeconfig; never replaced)")
    grants = sub.add_parser("grants", parents=[common], formatter_class=formatter,
                            help="list the personal kubeconfigs granted on this host, with their state",
                            description="Reads <state_dir>/<cluster>/grants.json: for whom, who asked, serial, "
                            "expiry and state (active or expired). Deleting the ClusterRoleBinding "
                            "lifeline-operators revokes every active grant at once; the ledger cannot see that, "
                            "the API server answers 403.")  # fmt: skip
    grants.add_argument("cluster", nargs="?", help="one cluster (default: all known)")
    grants.add_argument("--json", action="store_true", help="print JSON instead of a table")
    token = sub.add_parser("get-token", help="print an ExecCredential with an EKS IAM token (like aws eks get-token)",
                           description="Prints an ExecCredential (client.authentication.k8s.io/v1beta1) with an "
                           "EKS IAM token made in-process from the standard AWS credential chain; for IAM "
                           "kubeconfigs' exec plugin. Honours AWS_ENDPOINT_URL.")  # fmt: skip
    token.add_argument("--cluster", required=True, help="cluster name, or its id for older local clusters")
    token.add_argument("--region", default=None, help="AWS Region (default: the AWS SDK's)")
    token.add_argument("--endpoint-url", default=None, help="STS endpoint (a VPC endpoint; default: the SDK's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "get-token":
            return _get_token(args)
        config = load_config(args.config)
        check_state_dir(config, writer=args.command in ("run", "once"))
        command = {"run": _run, "once": _once, "status": _status, "verify": _verify, "grant": _grant,
                   "grants": _grants}[args.command]  # fmt: skip
        return command(config, args)
    except (ConfigError, UsageError) as exc:
        print(f"lifeline-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandFailed as exc:
        print(f"lifeline-agent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # e.g. the state directory vanished or became unreadable mid-command
        print(f"lifeline-agent: {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _get_token(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, NoCredentialsError, PartialCredentialsError

    from lifeline_agent.eks_token import get_token

    cluster = _cluster_argument(args.cluster)
    try:
        token = get_token(cluster, region=args.region, endpoint_url=args.endpoint_url)
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise CommandFailed(f"get-token: no usable AWS credentials ({exc}): set them the usual AWS SDK way "
                            "(environment, shared files, instance profile)") from None  # fmt: skip
    except (BotoCoreError, ValueError) as exc:
        raise CommandFailed(f"get-token: cannot make a token for {cluster}: {exc}") from None
    print(token.exec_credential_json())
    return EXIT_OK


def _cluster_argument(name: str) -> str:
    try:
        return validate_cluster_name(name)
    except ContractError as exc:
        raise UsageError(str(exc).removeprefix("clusterName: ")) from None


def _cluster_directory(config: AgentConfig, name: str) -> Path:
    """The state directory of a cluster named on the command line: a valid name, configured or known,
    whose directory is inside state_dir (also after symlinks)."""
    from lifeline_agent.store import known_clusters

    configured = {c.name for c in config.clusters}
    known = configured | set(known_clusters(config.state_dir))
    if _cluster_argument(name) not in known:
        listing = ", ".join(sorted(known)) or "none"
        raise UsageError(f"unknown cluster {name!r}: not in {config.source} nor in {config.state_dir} "
                         f"(known: {listing})")  # fmt: skip
    directory = config.cluster_dir(name)
    if directory.resolve().parent != config.state_dir.resolve():
        raise UsageError(f"{directory} leads outside {config.state_dir} (to {directory.resolve()}): not used")
    return directory


def _quiet_libraries() -> None:
    """The AWS SDK and urllib3 log request details (presigned URLs, bodies) at DEBUG: keep them at WARNING."""
    for name in ("botocore", "boto3", "urllib3", "kubernetes"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run(config: AgentConfig, _args: argparse.Namespace) -> int:
    from lifeline_agent.daemon import Daemon
    from lifeline_agent.observability import MetricsAddressError, Observer, SystemdNotifier, configure_logging

    configure_logging(config.log_level)
    _quiet_libraries()
    observer = Observer()
    try:
        endpoint = observer.serve(config.metrics_address)
    except (MetricsAddressError, OSError) as exc:
        logging.getLogger(__name__).error("cannot serve metrics on %s: %s", config.metrics_address, exc)
        return EXIT_USAGE
    daemon = Daemon(config, observer, SystemdNotifier())
    daemon.install_signal_handlers()
    try:
        return daemon.run()
    finally:
        endpoint.close()


def _once(config: AgentConfig, _args: argparse.Namespace) -> int:
    from lifeline_agent.daemon import cluster_names, make_link_monitor, preload_libraries
    from lifeline_agent.fleet import run_pass
    from lifeline_agent.hooks import wait_for_hooks
    from lifeline_agent.observability import configure_logging
    from lifeline_agent.readiness import ReadinessReporter

    configure_logging(config.log_level, stream=sys.stderr)
    _quiet_libraries()
    link = make_link_monitor(config, None)
    names = cluster_names(config, link)
    if not names:
        print("lifeline-agent: no cluster found", file=sys.stderr)
        return EXIT_FAILED
    if config.needs_region:
        preload_libraries()
    outcomes = run_pass(config, names, link)
    ReadinessReporter(config, lambda: [outcome.health for outcome in outcomes], link).report(probe_if_unknown=True)
    hook_wait = max([config.cluster(name).post_install_hook_timeout + 5 for name in names])
    if not wait_for_hooks(hook_wait):
        logging.getLogger(__name__).warning("a post-install hook is still running; exiting without it")
    rows = [_row(vars(outcome.health) | {"state": outcome.health.state.value, "link": _link_text(outcome.link)})
            for outcome in outcomes]  # fmt: skip
    _print_table(rows)
    return _state_exit_code([row["state"] if not row["error"] or row["state"] in ("needs-link", "revoked")
                             else "failed" for row in rows])  # fmt: skip


def _link_text(up: bool | None) -> str:
    return {True: "connected", False: "disconnected", None: "unknown"}[up]


def _statuses(config: AgentConfig) -> list[dict[str, Any]]:
    from lifeline_agent.store import ClusterStore, StoreError, known_clusters

    names = [c.name for c in config.clusters] + known_clusters(config.state_dir)
    documents = []
    for name in sorted(dict.fromkeys(names)):
        store = ClusterStore(config.cluster_dir(name))
        try:
            document = store.load_status() or {"cluster": name, "state": "pending", "link": "unknown"}
        except StoreError as exc:
            document = {"cluster": name, "state": "unknown", "link": "unknown", "last_error": str(exc)}
        document.setdefault("kubeconfig_path", str(store.kubeconfig_path))
        documents.append(document)
    return documents


def _when(timestamp: Any) -> str:
    if not isinstance(timestamp, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))


def _row(document: dict[str, Any]) -> dict[str, str]:
    return {
        "cluster": str(document.get("cluster")),
        "state": str(document.get("state")),
        "expires": _when(document.get("certificate_not_after")),
        "next renewal": _when(document.get("next_renewal")),
        "last verified": _when(document.get("last_verified")),
        "link": str(document.get("link", "unknown")),
        "kubeconfig": str(document.get("kubeconfig_path")),
        "error": str(document.get("last_error") or ""),
    }


def _print_table(rows: list[dict[str, str]], columns: list[str] | None = None) -> None:
    default = ("cluster", "state", "expires", "next renewal", "last verified", "link", "kubeconfig", "error")
    columns = columns or [c for c in default if c != "error" or any(row[c] for row in rows)]
    widths = {c: max([len(c)] + [len(row[c]) for row in rows]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())


def _status(config: AgentConfig, args: argparse.Namespace) -> int:
    documents = _statuses(config)
    if args.json:
        print(json.dumps(documents, indent=2, sort_keys=True))
    elif documents:
        _print_table([_row(d) for d in documents])
    else:
        print("no cluster configured or known yet")
    return _state_exit_code([str(d.get("state")) for d in documents]) if documents else EXIT_FAILED


def _verify(config: AgentConfig, args: argparse.Namespace) -> int:
    from lifeline_agent.keys import CertificateError
    from lifeline_agent.kube import KubeError
    from lifeline_agent.store import ClusterStore, StoreError, known_clusters
    from lifeline_agent.verify import Revoked, verify_kubeconfig

    if args.cluster is not None:
        directories = {args.cluster: _cluster_directory(config, args.cluster)}
    else:
        names = sorted({c.name for c in config.clusters} | set(known_clusters(config.state_dir)))
        directories = {name: config.cluster_dir(name) for name in names}
    codes = []
    for name, directory in directories.items():
        store = ClusterStore(directory)
        try:
            kubeconfig = store.current()
            if kubeconfig is None:
                raise StoreError(f"no kubeconfig at {store.kubeconfig_path}")
            cached = store.load_cache()
            group = config.group_for(cached.secret.breakglass_group if cached else None)
            identity = verify_kubeconfig(kubeconfig, config.user_name, group, timeout=config.timing.api_timeout)
        except Revoked as exc:
            print(f"{name}: REVOKED: {exc}")
            codes.append("revoked")
        except (KubeError, CertificateError, StoreError, ValueError, OSError) as exc:
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            codes.append("failed")
        else:
            print(f"{name}: OK: {store.kubeconfig_path} works as {identity.user} in {', '.join(identity.groups)}")
            codes.append("ready")
    return _state_exit_code(codes) if directories else EXIT_FAILED


def _grant(config: AgentConfig, args: argparse.Namespace) -> int:
    from lifeline_agent import grant
    from lifeline_agent.keys import CertificateError, utc
    from lifeline_agent.kube import KubeError
    from lifeline_agent.ledger import LedgerError
    from lifeline_agent.observability import configure_logging
    from lifeline_agent.requester import Requester
    from lifeline_agent.store import StoreError

    configure_logging(config.log_level, stream=sys.stderr)
    _quiet_libraries()
    try:
        name = grant.validate_user_name(args.user)
        ttl = grant.parse_ttl(args.ttl, config.grant.max_ttl)
        _cluster_directory(config, args.cluster)
        output = Path(args.output) if args.output else grant.default_output(args.cluster, name)
        issued = grant.issue(config, args.cluster, name, ttl, output, Requester.of_this_process())
    except (grant.InvalidUserName, grant.TtlOutOfRange, grant.OutputExists, grant.OutputNotWritable,
            grant.GroupRefused) as exc:
        raise UsageError(f"grant: {type(exc).__name__}: {exc}") from None
    except grant.GrantRevoked as exc:
        print(f"lifeline-agent: grant: REVOKED: {exc}", file=sys.stderr)
        return EXIT_REVOKED
    except (grant.GrantError, KubeError, CertificateError, StoreError, LedgerError) as exc:
        raise CommandFailed(f"grant: {type(exc).__name__}: {exc}; nothing was written") from None
    record = issued.grant
    print(f"{record.output}: {record.user} in {', '.join(issued.identity.groups)} on {record.cluster}, "
          f"serial {record.serial}, expires {utc(record.not_after)}")
    return EXIT_OK


def _grants(config: AgentConfig, args: argparse.Namespace) -> int:
    from lifeline_agent.keys import utc
    from lifeline_agent.ledger import Ledger, LedgerError
    from lifeline_agent.store import known_clusters

    if args.cluster is not None:
        directories = [_cluster_directory(config, args.cluster)]
    else:
        names = sorted({c.name for c in config.clusters} | set(known_clusters(config.state_dir)))
        directories = [config.cluster_dir(name) for name in names]
    now, records = time.time(), []
    try:
        for directory in directories:
            records += [dict(vars(g), state=g.state(now)) for g in Ledger(directory).grants()]
    except LedgerError as exc:
        raise CommandFailed(f"grants: {exc}") from None
    if args.json:
        print(json.dumps(records, indent=2, sort_keys=True))
        return EXIT_OK
    if not records:
        print("no personal kubeconfig granted yet")
        return EXIT_OK
    rows = [{"cluster": r["cluster"], "user": r["user"], "state": r["state"], "expires": utc(r["not_after"]),
             "serial": r["serial"], "requested by": r["requested_by"], "issued": utc(r["issued_at"]),
             "kubeconfig": r["output"]} for r in records]  # fmt: skip
    _print_table(rows, list(rows[0]))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
