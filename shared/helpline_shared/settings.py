"""One settings object for the whole system, read from `HELPLINE_*` environment variables.

Nothing reads the environment at import time: call :func:`load_settings` once at the edge
(the CLI) and pass the object down.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of every service; each field is `HELPLINE_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="HELPLINE_", extra="ignore", frozen=True)

    # Kafka
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of the Kafka brokers."
    )
    kafka_client_id: str = Field("helpline", description="Client id prefix sent to the broker.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for SSL/SASL_SSL.")
    kafka_enable_idempotence: bool = Field(
        False, description="Idempotent producer: turn on for Apache Kafka; Tansu lacks it."
    )
    kafka_topic_partitions: int = Field(3, ge=1, description="Partitions per created topic.")
    kafka_replication_factor: int = Field(1, ge=1)
    kafka_batch_max_records: int = Field(500, ge=1, description="Records per consumed batch.")
    kafka_batch_timeout_ms: int = Field(20, ge=0, description="Wait for a batch to fill.")
    kafka_fetch_max_wait_ms: int = Field(
        10,
        ge=0,
        description="How long the broker may hold a fetch that finds nothing new. Tansu does "
        "not answer a held fetch when records arrive, so every hop waited out this time (about "
        "120 ms median at the client default of 500); Apache Kafka answers at once, so a "
        "larger value there only saves idle fetches.",
    )
    kafka_background_fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        description="The same for consumers whose readers are people, not the next stage "
        "(metrics, casework, notify): a tenth of a second is nothing to them and saves the "
        "broker most of their idle fetches.",
    )
    kafka_fetch_max_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="The most one fetch response may carry, over all of a consumer's "
        "partitions. aiokafka keeps a response's records in memory until the service has "
        "consumed them, and Tansu ignores the per-partition bound, so with the client's "
        "default of 50 MiB a consumer far behind (a backlog) held tens of MiB per fetch; "
        "1 MiB is still several batches of `kafka_batch_max_records` reports.",
    )
    kafka_session_timeout_ms: int = Field(
        6000, ge=1000, description="Consumer group session: how soon a dead member is replaced."
    )
    kafka_group_instance_id: str | None = Field(
        None,
        description="Static group membership (e.g. the pod name): a restarted member gets its "
        "partitions back at once instead of after the session timeout.",
    )

    # PostgreSQL
    database_url: str | None = Field(
        None, description="postgresql:// URL; unset in `helpline dev` starts an embedded server."
    )
    database_pool_max: int = Field(10, ge=1)

    # HTTP endpoints (health, intake API, metrics API, simulator)
    http_host: str = "127.0.0.1"
    intake_port: int = 8001
    triage_port: int = 8002
    escalator_port: int = 8003
    metrics_port: int = 8004
    casework_port: int = 8005
    notify_port: int = 8006
    simulator_port: int = 8010

    # Escalation
    platform_base_url: str = Field(
        "http://127.0.0.1:8010",
        description="Base URL of the platforms' reporting endpoints (the simulator in dev).",
    )
    notifier_name: str = Field(
        "Professionals Online Safety Helpline", description="Notifier named in DSA notices."
    )
    notifier_email: str = Field("helpline@example.org", description="Notifier's email.")
    platform_timeout_s: float = Field(10.0, gt=0)
    platform_concurrency: int = Field(32, ge=1, description="In-flight calls per platform.")
    escalation_claim_batch: int = Field(
        256, ge=1, description="Escalations a platform worker claims (and records) at once."
    )
    escalation_loops_per_platform: int = Field(
        2, ge=1, description="Concurrent claim-call-record loops per platform."
    )
    platform_rate_per_s: float = Field(200.0, gt=0, description="Calls per second per platform.")
    escalation_max_attempts: int = Field(5, ge=1)
    escalation_retry_base_s: float = Field(1.0, gt=0)
    escalation_retry_max_s: float = Field(300.0, gt=0)
    escalation_status_interval_s: float = Field(
        5.0, gt=0, description="How soon to chase a platform for a decision after submission."
    )
    escalation_status_max_interval_s: float = Field(
        3600.0,
        gt=0,
        description="Cap of the doubling interval between status checks of a pending decision.",
    )
    platform_settle_s: float | None = Field(
        None,
        ge=0,
        description="Override every platform's settle period: how long after an unclear "
        "submit a lookup that finds nothing is still not proof it never arrived.",
    )
    escalation_claim_lease_s: float = Field(
        120.0, gt=0, description="An in-flight attempt older than this is reconciled."
    )
    escalation_poll_interval_s: float = Field(1.0, gt=0)

    # Platform simulator (dev, tests, benchmark)
    simulator_seed: int = 2024
    simulator_latency_ms: float = Field(20.0, ge=0, description="Mean response latency.")
    simulator_error_rate: float = Field(0.0, ge=0, le=1, description="Share of 503 answers.")
    simulator_rate_limit_rate: float = Field(0.0, ge=0, le=1, description="Share of 429s.")
    simulator_decision_delay_ms: float = Field(
        0.0, ge=0, description="Time to a decision; 0 decides at submission."
    )
    simulator_takedown_rate: float = Field(0.942, ge=0, le=1)
    simulator_lost_reply_rate: float = Field(
        0.0, ge=0, le=1, description="Share of notices stored whose reply is then dropped."
    )
    simulator_store_delay_ms: float = Field(
        0.0, ge=0, description="Time before a received notice is stored (visible to lookup)."
    )

    allow_simulated_reports: bool = Field(
        False,
        description="Intake accepts reports whose source is in the simulated namespace "
        "(`simulated:...`, from `helpline simulate`); refused otherwise.",
    )

    # Dead letters: stop consuming when more than this share of a window is dead-lettered.
    dlq_max_ratio: float = Field(0.5, gt=0, le=1)
    dlq_window: int = Field(200, ge=1)
    dlq_hold_s: float = Field(
        30.0, ge=0, description="How long a tripped bound holds its batch before releasing it."
    )
    consumer_max_batch_failures: int = Field(
        3, ge=1, description="Failures of one batch before it is split to find a poison message."
    )
    consumer_stuck_after_s: float = Field(
        30.0, gt=0, description="A batch failing this long makes the service not ready."
    )

    graceful_timeout_s: float = Field(15.0, gt=0)
    metrics_snapshot_interval_s: float = Field(
        60.0, gt=0, description="Metrics publishes a totals snapshot at least this often."
    )
    metrics_snapshot_debounce_s: float = Field(
        1.0, gt=0, description="...and at most this often when the totals change."
    )
    log_level: str = "INFO"
    log_json: bool | None = Field(None, description="JSON logs; default: JSON unless on a TTY.")
    data_dir: Path = Field(Path(".helpline"), description="Where `helpline dev` keeps state.")
    # Access (see helpline_shared.webapi): keys are checked on every request except health
    # probes, /metrics and the public form; submissions are rate-limited per key and address.
    rate_limit_per_key: str = Field(
        "600/minute", description="Requests one API key may make (limits notation)."
    )
    rate_limit_per_client: str = Field(
        "300/minute", description="Requests one client address may make to a keyed API."
    )
    form_rate_limit: str = Field(
        "20/hour", description="Public form submissions one client address may make."
    )
    trusted_proxies: str | None = Field(
        None,
        description="Comma-separated addresses or networks of the reverse proxies (e.g. the "
        "ingress controller's pod network) whose X-Forwarded-For names the client; unset: "
        "the header is never trusted, and the client is the socket peer.",
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Signs practitioners' session cookies and the forms' CSRF tokens. "
        "Unset: a random one per process (sessions end when it restarts).",
    )
    session_max_age_s: int = Field(8 * 3600, ge=60, description="A sign-in lasts this long.")
    cookie_secure: bool = Field(
        False, description="Mark cookies Secure (set it whenever served over HTTPS)."
    )
    # Deadlines for a platform's decision, by urgency: the rules data's, unless set here
    # (seconds; tests use a few).
    deadline_critical_s: float | None = Field(None, gt=0)
    deadline_high_s: float | None = Field(None, gt=0)
    deadline_normal_s: float | None = Field(None, gt=0)
    renotify_interval_s: float = Field(
        24 * 3600.0, gt=0, description="After a breach, re-notify the platform this often."
    )
    renotify_max: int = Field(10, ge=0, description="Follow-ups per escalation at most.")
    deadline_scan_interval_s: float = Field(
        30.0, gt=0, description="How often the escalator looks for passed deadlines."
    )
    hotline_base_url: str | None = Field(
        None,
        description="The national hotline's reporting endpoint; unset: HELPLINE_PLATFORM_BASE_URL "
        "(the simulator plays it in dev).",
    )
    hotline_credentials: SecretStr | None = Field(
        None,
        description="The hotline's bearer credentials; required unless its endpoint is the "
        "simulator (the escalator refuses to start without them).",
    )
    simulator_appeal_overturn_rate: float = Field(
        0.3, ge=0, le=1, description="Share of appeals the simulated platforms overturn."
    )
    # Notifications (helpline_notify): mail to reporters and alerts to the people on duty.
    smtp_host: str = Field("127.0.0.1", description="SMTP server (dev: the local catcher).")
    smtp_port: int = Field(1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        "none", description="none (dev catcher), starttls (port 587) or tls (port 465)."
    )
    smtp_timeout_s: float = Field(10.0, gt=0)
    mail_from: str = Field(
        "Online Safety Helpline <helpline@example.org>", description="From: of every email."
    )
    mail_per_recipient_limit: str = Field(
        "20/hour", description="Emails one address may be sent (limits notation)."
    )
    receipt_opt_out_sources: list[str] = Field(
        default_factory=list,
        description="Sources whose reporters get no receipt or outcome email (the source "
        'tells its own users); JSON list, e.g. ["partner-portal"].',
    )
    status_base_url: str = Field(
        "http://127.0.0.1:8006",
        description="Public base URL of the status pages linked from emails.",
    )
    status_link_ttl_days: int = Field(180, ge=1, description="A status link expires after this.")
    alert_emails: list[str] = Field(
        default_factory=list, description="Who on duty is emailed an alert (JSON list)."
    )
    alert_webhook_url: str | None = Field(None, description="Where alerts are POSTed.")
    alert_webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key that signs each webhook delivery."
    )
    delivery_max_attempts: int = Field(
        12, ge=1, description="Tries of one email or webhook delivery before it is given up."
    )
    delivery_retry_base_s: float = Field(2.0, gt=0)
    delivery_retry_max_s: float = Field(600.0, gt=0)
    mail_catcher_smtp_port: int = Field(1025, ge=1, le=65535, description="dev SMTP catcher.")
    intake_original_retention_days: int = Field(
        30,
        ge=0,
        description="Days intake keeps the full bytes of a refused message "
        "(`helpline intake purge` clears older ones; reasons and counts stay).",
    )

    @model_validator(mode="after")
    def _numbers_are_finite(self) -> Settings:
        """`inf` and `nan` are not durations, rates or ratios: refuse them at start-up."""
        for name, value in self:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"HELPLINE_{name.upper()} must be a finite number, not {value}")
        return self

    @model_validator(mode="after")
    def _escalation_settings_are_consistent(self) -> Settings:
        """Refuse at start-up settings that would make escalation fail on every call."""
        call_budget_s = self.platform_timeout_s + 1.0  # PlatformWorker.call_budget_s
        if self.escalation_claim_lease_s <= 2 * call_budget_s:
            raise ValueError(
                f"HELPLINE_ESCALATION_CLAIM_LEASE_S ({self.escalation_claim_lease_s}) must "
                f"exceed twice a call's budget (HELPLINE_PLATFORM_TIMEOUT_S + 1 s = "
                f"{call_budget_s}): a claim must be able to finish its call within the lease"
            )
        if self.escalation_retry_max_s < self.escalation_retry_base_s:
            raise ValueError(
                "HELPLINE_ESCALATION_RETRY_MAX_S must be at least HELPLINE_ESCALATION_RETRY_BASE_S"
            )
        if self.escalation_status_max_interval_s < self.escalation_status_interval_s:
            raise ValueError(
                "HELPLINE_ESCALATION_STATUS_MAX_INTERVAL_S must be at least "
                "HELPLINE_ESCALATION_STATUS_INTERVAL_S"
            )
        return self


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
