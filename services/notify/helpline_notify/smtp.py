"""One SMTP connection for the emails of a sender's step (see :class:`SmtpSession`)."""

from __future__ import annotations

import contextlib
from email.message import EmailMessage
from email.utils import parseaddr
from types import TracebackType

import aiosmtplib

from helpline_shared.settings import Settings

# A connection that breaks under a later email (the server closed an idle or used-up
# connection) is opened once more; after that the step's remaining emails wait their retry.
RECONNECTS = 1


def local_hostname(settings: Settings) -> str:
    """The name given in EHLO: the domain of `mail_from` (so aiosmtplib never asks the
    resolver for this host's FQDN, a blocking lookup on every connection)."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2].strip()
    if not domain or any(c.isspace() or ord(c) < 33 or ord(c) == 127 for c in domain):
        return "helpline.invalid"
    return domain


class SmtpSession:
    """Sends one step's emails over one connection, opened at the first email sent (a step
    whose emails all wait sends nothing and connects nowhere), closed with QUIT at the end.

    Per email, :meth:`send` raises what aiosmtplib raises, so the caller decides as it would
    for a connection of its own:

    - a reply of the server refusing *this* email (`SMTPResponseException`,
      `SMTPRecipientsRefused`): aiosmtplib has reset the envelope, the connection carries on;
    - the connection breaking (disconnect, timeout, OS error): it is dropped. When it had
      already carried an email (the server may close a connection it deems idle or used
      up), the email is tried once more on a new connection; at most `RECONNECTS` new
      connections per session;
    - connecting failing: the same error is raised for every later email of the session
      without connecting again, so an unreachable server costs one timeout per step, not
      one per email (each email still counts the try and waits its backoff).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._hostname = local_hostname(settings)
        self._client: aiosmtplib.SMTP | None = None
        self._carried = 0  # emails accepted over the current connection
        self._connects_left = 1 + RECONNECTS
        self._unreachable: BaseException | None = None
        self.connections = 0  # opened by this session

    async def __aenter__(self) -> SmtpSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if exc is None and client.is_connected:
            # Every email is already accounted for; the server's goodbye is not.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await client.quit()
        client.close()

    async def send(self, message: EmailMessage) -> None:
        """Send `message` (see the class doc for what is raised and what is retried)."""
        client = await self._connected()
        try:
            await client.send_message(message)
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            raise
        except ConnectionError:
            carried = self._carried
            self._drop()
            if carried == 0 or self._connects_left == 0:
                raise
            client = await self._connected()
            try:
                await client.send_message(message)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if not isinstance(exc, aiosmtplib.SMTPResponseException):
                    self._drop()
                raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._drop()
            raise
        self._carried += 1

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        self._drop()  # closed by the server since (e.g. after a 421)
        if self._unreachable is not None:
            raise self._unreachable
        if self._connects_left == 0:
            raise aiosmtplib.SMTPServerDisconnected(
                "connection lost again; no more reconnects this step"
            )
        self._connects_left -= 1
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            local_hostname=self._hostname,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            timeout=s.smtp_timeout_s,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            self._unreachable = exc
            raise
        self.connections += 1
        self._client = client
        self._carried = 0
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
