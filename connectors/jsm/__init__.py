"""Jira Service Management: Jira Cloud platform REST client (jira), webhook parsing, simulator."""
