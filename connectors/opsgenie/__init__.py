"""Opsgenie alerts as a source: outgoing webhooks in, Alert API v2 polls and the way back."""
