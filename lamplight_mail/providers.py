"""Provider presets and what SMTP server answers mean, from ../shared/PROVIDERS.md.

Every preset only fills the account form: tenants can lower their own limits.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from lamplight_mail.models import AuthMethod, Security

# Lamplight's help page "Comms: Linking with Mailchimp", under LAMPLIGHT_MAIL_LAMPLIGHT_URL.
MAILCHIMP_HELP_PATH = "/help/index/p/21.2.0"


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    host: str
    port: int
    security: Security
    auth_method: AuthMethod
    daily_limit: int  # recipients per rolling 24 h
    per_minute_limit: int  # messages per minute
    max_recipients: int  # recipients per message
    connection_cap: int  # concurrent connections per mailbox
    hint: str  # the provider's own limits and sign-in, as PROVIDERS.md has them


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "office365",
            "Office 365 (Microsoft 365 / Exchange Online)",
            "smtp.office365.com",
            587,
            Security.TLS,
            AuthMethod.LOGIN,
            10_000,
            30,
            500,
            3,
            "Microsoft 365 allows 10,000 recipients in any 24 hours (a hard limit; your Microsoft "
            "admin may set it lower), delays mail sent faster than 30 messages a minute, takes "
            "500 recipients per message and 3 connections to one mailbox at once. Signing in "
            "with a password ends by default at the end of December 2026: use OAuth 2.0.",
        ),
        Preset(
            "gmail",
            "Gmail (Google Workspace)",
            "smtp.gmail.com",
            587,
            Security.TLS,
            AuthMethod.LOGIN,
            # Google Workspace: 2,000 messages a day (and 10,000 recipients, 3,000 of them
            # external). Every message here has one recipient, so 2,000 binds.
            2_000,
            60,
            100,
            3,
            "Google Workspace sends 2,000 messages a day (500 on trial accounts; personal Gmail "
            "about 500: lower the daily figure for those), and at most 10,000 recipients, "
            "3,000 of them outside your organisation. Each message here has one recipient, so "
            "2,000 a day is the figure that binds. Up to 100 recipients per message over SMTP. "
            "Sign in with an app password (2-Step Verification on) or OAuth 2.0.",
        ),
        Preset(
            "outlook",
            "Outlook.com / Hotmail",
            "smtp-mail.outlook.com",
            587,
            Security.TLS,
            AuthMethod.OAUTH2,
            300,
            30,
            500,
            3,
            "Outlook.com allows 5,000 recipients a day for Microsoft 365 subscribers and fewer "
            "for free accounts (the preset uses 300). Microsoft publishes no rate per minute "
            "(the preset uses 30); 500 recipients per message. Outlook.com accepts modern "
            "authentication (OAuth 2.0) only.",
        ),
    )
}
CUSTOM = "custom"
PROVIDER_CHOICES = [(name, preset.label) for name, preset in PRESETS.items()] + [
    (CUSTOM, "Other (enter the settings yourself)")
]


class AnswerKind(enum.StrEnum):
    ACCEPTED = "accepted"  # the service took the message
    TEMPORARY = "temporary"  # retry the message later, with backoff
    PERMANENT = "permanent"  # this message failed; keep the answer
    PAUSE_ACCOUNT = "pause_account"  # the account itself is blocked: hold its mail, tell the admin
    UNKNOWN = "unknown"  # the message may or may not have been accepted (timeout after DATA)


@dataclass(frozen=True)
class AnswerRule:
    pattern: re.Pattern[str]
    kind: AnswerKind
    hint: str


def _rule(pattern: str, kind: AnswerKind, hint: str) -> AnswerRule:
    return AnswerRule(re.compile(pattern, re.IGNORECASE), kind, hint)


# First match wins: the specific enhanced status codes before the generic classes.
ANSWER_RULES: tuple[AnswerRule, ...] = (
    _rule(
        r"5\.7\.139.*(criteria|security defaults|conditional access)",
        AnswerKind.PAUSE_ACCOUNT,
        "Microsoft blocked the sign-in (multi-factor authentication, Conditional Access or "
        "Security Defaults). Use OAuth (modern authentication) for this account, or ask your "
        "Microsoft 365 admin to exempt this mailbox from the policy.",
    ),
    _rule(
        r"5\.7\.139",
        AnswerKind.PAUSE_ACCOUNT,
        "Authenticated SMTP is switched off for this mailbox or tenant. In the Microsoft 365 "
        "admin centre open Users > Active users > this user > Mail > Manage email apps and "
        'tick "Authenticated SMTP".',
    ),
    _rule(
        r"5\.7\.3\b",
        AnswerKind.PAUSE_ACCOUNT,
        "The username or password was not accepted. With two-factor authentication on, the "
        "password must be an app password, not the password you sign in with; the username is "
        "the full email address.",
    ),
    _rule(
        r"5\.7\.30\b",
        AnswerKind.PAUSE_ACCOUNT,
        "Microsoft has retired basic authentication (passwords, app passwords included) for "
        "this tenant. Switch this account to OAuth (modern authentication).",
    ),
    _rule(
        r"^538\b|5\.7\.11\b",
        AnswerKind.PAUSE_ACCOUNT,
        "The server accepts mail only over an encrypted connection. Set SSL type TLS (STARTTLS) "
        "on port 587, or SSL on port 465.",
    ),
    _rule(
        r"5\.7\.57\b",
        AnswerKind.PAUSE_ACCOUNT,
        "The server wants you to sign in before sending. Set SSL type TLS on port 587 and "
        'authentication "login".',
    ),
    _rule(
        r"^530\b|5\.7\.0\b.*authenticat",
        AnswerKind.PAUSE_ACCOUNT,
        'The server wants Lamplight to sign in before sending. Set authentication "login" '
        "with the mailbox's full address as the username and its (app) password.",
    ),
    _rule(
        r"5\.7\.60\b|5\.2\.252|SendAsDenied",
        AnswerKind.PAUSE_ACCOUNT,
        "The From address is not the signed-in mailbox. Send from the mailbox's own address, "
        "or have the Microsoft 365 admin grant this mailbox Send As rights.",
    ),
    _rule(
        r"5\.2\.0.*SubmissionQuotaExceeded",
        AnswerKind.PAUSE_ACCOUNT,
        "Microsoft's limit of 10,000 recipients in 24 hours has been reached for this mailbox. "
        "Sending resumes when the oldest sends leave the 24-hour window; Microsoft cannot lift "
        "it. Check whether other software also sends from this mailbox, and use MailChimp for "
        "bulk email.",
    ),
    _rule(
        r"5\.7\.233",
        AnswerKind.PAUSE_ACCOUNT,
        "Your whole Microsoft 365 tenant has reached its limit on external recipients. It "
        "affects every mailbox in the organisation: wait, and send bulk email with MailChimp.",
    ),
    _rule(
        r"4\.3\.2|concurrent connections",
        AnswerKind.TEMPORARY,
        "Too many connections to this mailbox at once (Microsoft allows 3). Lower the "
        "account's connection limit.",
    ),
    _rule(
        r"5\.2\.25[1-5]",
        AnswerKind.PAUSE_ACCOUNT,
        "Microsoft is throttling this mailbox after repeated errors. Fix the cause (mailbox "
        "full, Send As rights, licence, bad recipients) before resuming.",
    ),
    _rule(
        r"5\.2\.2\b|mailbox full",
        AnswerKind.PAUSE_ACCOUNT,
        "The sending mailbox is full (Sent Items included). Free some space or set a "
        "retention policy, then resume the account.",
    ),
    _rule(
        r"4\.7\.66|TLS 1\.[01]",
        AnswerKind.PAUSE_ACCOUNT,
        "The server refuses old TLS versions. Lamplight Mail uses TLS 1.2 or newer; check any "
        "proxy between this server and the mail server.",
    ),
    _rule(
        r"5\.1\.8",
        AnswerKind.PAUSE_ACCOUNT,
        "Microsoft has blocked this mailbox for sending spam. Release it in the Microsoft 365 "
        "Restricted users portal and check the account has not been compromised.",
    ),
    _rule(
        r"5\.7\.9\b",
        AnswerKind.PAUSE_ACCOUNT,
        "Google refused the password. Create a Google app password (2-Step Verification must "
        "be on) and enter it here.",
    ),
    _rule(
        r"5\.7\.8\b",
        AnswerKind.PAUSE_ACCOUNT,
        "The username or password was not accepted. Check the address and the app password.",
    ),
    _rule(
        r"5\.4\.5",
        AnswerKind.PAUSE_ACCOUNT,
        "Google's daily sending limit has been reached. Sending can resume within 24 hours; "
        "use MailChimp for bulk email.",
    ),
    _rule(
        r"^535\b",
        AnswerKind.PAUSE_ACCOUNT,
        "The username or password was not accepted. If two-factor authentication is on, use an "
        "app password.",
    ),
)


@dataclass(frozen=True)
class Interpretation:
    kind: AnswerKind
    hint: str | None


def interpret(code: int | None, answer: str) -> Interpretation:
    """What a server answer means for the message and the account, with advice for the admin."""
    text = f"{code or ''} {answer}".strip()
    for rule in ANSWER_RULES:
        if rule.pattern.search(text) or rule.pattern.search(answer):
            return Interpretation(rule.kind, rule.hint)
    if code is not None and 400 <= code < 500:
        return Interpretation(AnswerKind.TEMPORARY, None)
    return Interpretation(AnswerKind.PERMANENT, None)


@dataclass(frozen=True)
class ProviderLimit:
    """An answer meaning the provider's own quota or rate was reached for the whole account: the
    account waits (see limits.hold_for_answer); its messages are deferred, never failed."""

    pattern: re.Pattern[str]
    # None: until the account's own oldest sends leave the rolling 24-hour window.
    hold_seconds: int | None


def _limit(pattern: str, hold_seconds: int | None) -> ProviderLimit:
    return ProviderLimit(re.compile(pattern, re.IGNORECASE), hold_seconds)


PROVIDER_LIMITS: tuple[ProviderLimit, ...] = (
    _limit(r"5\.2\.0.*SubmissionQuotaExceeded", None),  # Microsoft: 10,000 recipients a day
    _limit(r"5\.4\.5", None),  # Google: daily user sending limit
    _limit(r"5\.7\.233", 3600),  # Microsoft: the tenant's external recipient rate limit
    _limit(r"4\.3\.2|concurrent connections", 60),
    # Rate answers about the sender (4.7.x), not about one busy recipient (450 4.2.1).
    _limit(r"^4(21|50|51)\b.*\b4\.7\.\d+\b.*(rate|throttl|too many|busy)", 60),
    _limit(r"^421\b.*(rate limit|throttl|too many messages)", 60),
)


def provider_limit(code: int | None, answer: str) -> ProviderLimit | None:
    """The provider quota or rate rule an answer matches, if any."""
    text = f"{code or ''} {answer}".strip()
    for rule in PROVIDER_LIMITS:
        if rule.pattern.search(text):
            return rule
    return None
