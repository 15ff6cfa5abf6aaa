"""PagerDuty: REST v2 client, webhooks v3, simulator."""
