"""Escalator: sends each URL to its platform, records every attempt and outcome, chases."""
