"""What the public `GET /` may show of the configuration: URIs without their secrets or paths.

A MongoDB URI keeps its scheme, user name, hosts, database and the options on an allow-list of
settings that hold no secret (`replicaSet`, `authSource`, timeouts...); the password and every
other option's value (`tlsCertificateKeyFilePassword`, `authMechanismProperties` with an AWS
session token, options added by future drivers) become `***`. File paths (`tlsCAFile`, a unix
socket host) are shown only when the operator asks for them (SHOW_STORAGE_PATHS).

The URI is taken apart as text, not with PyMongo's parser: that one resolves `mongodb+srv://`
names through DNS, and a URI it refuses must still not be echoed. Where the text is ambiguous
(an `@` past the authority: an unescaped password, or an `@` in the query) it shows `<invalid>`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"
SAFE_OPTIONS = frozenset(
    name.lower()
    for name in (
        "appName",
        "authMechanism",
        "authSource",
        "compressors",
        "connectTimeoutMS",
        "directConnection",
        "heartbeatFrequencyMS",
        "journal",
        "loadBalanced",
        "localThresholdMS",
        "maxConnecting",
        "maxIdleTimeMS",
        "maxPoolSize",
        "maxStalenessSeconds",
        "minPoolSize",
        "readConcernLevel",
        "readPreference",
        "readPreferenceTags",
        "replicaSet",
        "retryReads",
        "retryWrites",
        "serverMonitoringMode",
        "serverSelectionTimeoutMS",
        "serverSelectionTryOnce",
        "socketTimeoutMS",
        "srvMaxHosts",
        "srvServiceName",
        "ssl",
        "timeoutMS",
        "tls",
        "tlsAllowInvalidCertificates",
        "tlsAllowInvalidHostnames",
        "tlsDisableOCSPEndpointCheck",
        "tlsInsecure",
        "uuidRepresentation",
        "w",
        "waitQueueTimeoutMS",
        "wTimeoutMS",
        "zlibCompressionLevel",
    )
)
PATH_OPTIONS = frozenset({"tlscafile", "tlscertificatekeyfile", "tlscrlfile", "sslcafile"})
_OPTION_SEPARATOR = re.compile(r"[&;]")
# A host name, IPv4, [IPv6] or percent-encoded socket path, and a numeric port.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._%~-]+)(:\d{1,5})?$")


def redacted_mongodb_uri(uri: str, show_paths: bool = False) -> str:
    """`uri` as `GET /` shows it (see the module's docstring); `<invalid>` if it is not one."""
    if not uri:
        return ""
    scheme, separator, rest = uri.partition("://")
    if not separator or scheme not in {"mongodb", "mongodb+srv"}:
        return "<invalid>"
    if _at_after_authority(rest):
        return "<invalid>"
    before_query, _, query = rest.partition("?")
    credentials, at, location = before_query.rpartition("@")
    hosts, slash, database = location.partition("/")
    if not all(_HOST.match(host) for host in hosts.split(",")):
        return "<invalid>"
    user = f"{credentials.split(':', 1)[0]}:{HIDDEN}@" if at else ""
    if _is_socket_path(hosts) and not show_paths:
        hosts = HIDDEN
    options = [_option(part, show_paths) for part in _OPTION_SEPARATOR.split(query) if part]
    tail = "?" + "&".join(options) if options else ""
    return f"{scheme}://{user}{hosts}{slash}{database}{tail}"


def _at_after_authority(rest: str) -> bool:
    """An `@` past the first `/` or `?`: a password with unescaped characters (`p/w@host`),
    or an `@` in the path or the query. The two cannot be told apart, so neither is shown."""
    first_at = rest.find("@")
    ends = [index for index in (rest.find("/"), rest.find("?"), rest.find("#")) if index >= 0]
    return first_at >= 0 and bool(ends) and first_at > min(ends)


def _is_socket_path(hosts: str) -> bool:
    return "%2f" in hosts.lower() or hosts.startswith("/")


def _option(part: str, show_paths: bool) -> str:
    name, equals, _ = part.partition("=")
    if name.lower() in SAFE_OPTIONS or (show_paths and name.lower() in PATH_OPTIONS):
        return part
    return f"{name}{equals}{HIDDEN}"


def redacted_url(url: str) -> str | None:
    """An endpoint URL (JWKS, S3) without a password in it or its query's values."""
    if not url:
        return None
    if _at_after_authority(url.partition("://")[2]):
        return "<invalid>"
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = (
                f"{netloc.rpartition('@')[0].split(':', 1)[0]}:{HIDDEN}@"
                + (netloc.rpartition("@")[2])
            )
        query = "&".join(
            f"{p.partition('=')[0]}={HIDDEN}" for p in _OPTION_SEPARATOR.split(parts.query) if p
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<invalid>"
