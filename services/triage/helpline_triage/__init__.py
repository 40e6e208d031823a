"""Triage: categorises harm and urgency, normalises URLs, identifies platforms, picks routes."""
