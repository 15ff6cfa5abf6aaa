"""Microsoft Teams: @mentions of an outgoing webhook in, Adaptive Cards out through Workflows webhooks."""
