"""Grafana OnCall: alert groups in (outgoing webhooks, catch-up polls), and the way back (status, resolution notes)."""
