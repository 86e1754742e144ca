"""Lifeline agent: keeps an offline X.509 kubeconfig current for EKS local clusters on AWS Outposts."""

__version__ = "0.1.0"
