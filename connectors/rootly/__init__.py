"""Rootly: JSON:API incidents in, signed webhooks, and the way back (status, timeline events)."""
