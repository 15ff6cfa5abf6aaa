"""incident.io as a source: Svix-signed webhooks, REST v2 polls, and the way back (status, severity)."""
