"""ServiceNow: Table API client (pysnow), simulator."""
