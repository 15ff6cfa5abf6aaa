"""Squadcast incidents as a source: outgoing webhooks (v2) in, API v3 catch-up polls, and the way back."""
