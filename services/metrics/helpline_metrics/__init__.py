"""Metrics: exact running totals over every case and escalation event."""
