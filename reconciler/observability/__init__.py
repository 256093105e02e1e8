"""Logs and Prometheus metrics, shared by every layer above."""
