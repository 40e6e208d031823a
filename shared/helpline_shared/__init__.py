"""Code every helpline service shares: settings, logging, events, Kafka and database helpers."""
