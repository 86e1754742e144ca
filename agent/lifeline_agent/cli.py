"""Command line of the agent (placeholder until the agent issue lands)."""

from __future__ import annotations

import argparse
import sys

from lifeline_agent import eks_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifeline-agent")
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("get-token", help="print an ExecCredential with an EKS IAM token")
    tok.add_argument("--cluster", required=True, help="cluster name, or its id for older local clusters")
    tok.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    if args.command == "get-token":
        print(eks_token.get_token(args.cluster, region=args.region).exec_credential_json())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
