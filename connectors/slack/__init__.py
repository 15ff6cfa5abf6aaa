"""Slack as a chat source: incident channels open and link desk tickets; the desk talks back into them."""
