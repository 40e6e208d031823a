"""Intake: accepts reports from Kafka and HTTP, validates, deduplicates, stores, opens cases."""
