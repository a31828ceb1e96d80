"""Settings, read from the environment variables of the contract (see docs/configuration.md)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class SettingError(ImproperlyConfigured):
    """A wrong environment variable; its message names the variable and the accepted values.

    `manage.py` prints it as one line and exits with status 2.
    """


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_int(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    accepted = f"an integer from {minimum}" + (f" to {maximum}" if maximum is not None else " up")
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name} must be {accepted}, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise SettingError(f"{name} must be {accepted}, got {raw!r}")
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also refuses nan
        raise SettingError(f"{name} must be a number of at least {minimum:g}, got {raw!r}")
    return value


def env_directory(name: str, default: str) -> Path:
    """A directory from the environment (relative to the working directory, as typed), else
    `default` inside the project (the folder of manage.py), wherever a command is started."""
    configured = env_str(name)
    return Path(configured).resolve() if configured else BASE_DIR / default


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingError(f"{name} must be true or false (also 1/0, yes/no, on/off), got {raw!r}")


def env_choice(name: str, choices: set[str], default: str = "") -> str:
    value = env_str(name, default)
    if value not in choices:
        accepted = " or ".join(repr(c) if c else "empty" for c in sorted(choices))
        raise SettingError(f"{name} must be {accepted}, got {value!r}")
    return value


def _secret_key(data_directory: Path) -> str:
    """SECRET_KEY from the environment, else one kept in the data directory.

    Replicas must share it (signed download URLs are checked with it): set SECRET_KEY in
    production. A persisted key keeps URLs valid across restarts of a single instance.
    """
    configured = env_str("SECRET_KEY")
    if configured:
        return configured
    key_file = data_directory / "secret_key"
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        pass
    try:
        data_directory.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key
    except FileExistsError:
        return key_file.read_text().strip()
    except OSError:
        return secrets.token_urlsafe(48)


# --- Service ---------------------------------------------------------------------------------
APPLICATION_NAME = "imagestore"
VERSION = "1.0.0"
APP_PORT = env_int("APP_PORT", 3000, minimum=1, maximum=65535)
DATA_DIRECTORY = env_directory("DATA_DIRECTORY", "data")
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = _secret_key(DATA_DIRECTORY)
ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "*").split(",") if h.strip()]

# --- Serving (images.runtime.serving) ----------------------------------------------------------------
# Empty APP_HOST: 127.0.0.1 while auth is off (an open API stays on this machine), else 0.0.0.0.
APP_HOST = env_str("APP_HOST")
WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 2, minimum=1, maximum=64)
GUNICORN_WORKER_CLASS = env_choice("GUNICORN_WORKER_CLASS", {"gevent", "gthread", "sync"}, "gevent")
GUNICORN_THREADS = env_int("GUNICORN_THREADS", 4, minimum=1, maximum=256)
# Connections one gevent worker holds at once (each costs a greenlet, not a thread).
WORKER_CONNECTIONS = env_int("WORKER_CONNECTIONS", 1000, minimum=10)
# A worker is replaced after this many requests (plus up to the jitter); 0: never.
MAX_REQUESTS = env_int("MAX_REQUESTS", 10000, minimum=0)
MAX_REQUESTS_JITTER = env_int("MAX_REQUESTS_JITTER", 1000, minimum=0)
# Seconds an idle keep-alive connection stays open, and a request head may take to arrive.
HTTP_KEEPALIVE_TIMEOUT = env_int("HTTP_KEEPALIVE_TIMEOUT", 5, minimum=1, maximum=30)
# Seconds a connection may stay silent while a body is read or a response written.
HTTP_IDLE_TIMEOUT = env_int("HTTP_IDLE_TIMEOUT", 30, minimum=1, maximum=3600)
# A request body may keep a gevent worker waiting HTTP_BODY_TIMEOUT seconds, plus one second
# per HTTP_BODY_MIN_RATE bytes it sent (0: no deadline, only the idle timeout); past it: 408.
HTTP_BODY_TIMEOUT = env_int("HTTP_BODY_TIMEOUT", 20, minimum=1, maximum=3600)
HTTP_BODY_MIN_RATE = env_int("HTTP_BODY_MIN_RATE", 1024, minimum=0)
# Connections a gevent worker holds at once from one client address (0: no cap); the next is
# answered 429. Behind a proxy every client has the proxy's address: set 0 there.
HTTP_MAX_CONNECTIONS_PER_CLIENT = env_int("HTTP_MAX_CONNECTIONS_PER_CLIENT", 100, minimum=0)
# Longest request line in bytes: a 64 KiB `filter`, percent-encoded, fits in it.
HTTP_MAX_REQUEST_LINE = env_int("HTTP_MAX_REQUEST_LINE", 256 * 1024, minimum=4096, maximum=1048576)
# Seconds SIGTERM gives in-flight requests before workers are stopped.
GRACEFUL_TIMEOUT = env_int("GRACEFUL_TIMEOUT", 20, minimum=1, maximum=3600)

# --- MongoDB ---------------------------------------------------------------------------------
# Empty means: `manage.py serve` starts the embedded MongoDB (a replica set of one) and sets it.
# Writes are acknowledged once journaled on a majority (w=majority, journal=true) and reads use
# the primary with read concern majority, unless the connection string sets these itself.
MONGODB_CONNECTION_STRING = env_str("MONGODB_CONNECTION_STRING")
# WiredTiger's cache of the embedded server, in GB (mongod's own default is half the RAM).
MONGODB_EMBEDDED_CACHE_GB = env_float("MONGODB_EMBEDDED_CACHE_GB", 0.25, minimum=0.25)
MONGODB_DEFAULT_DATABASE = "image_storage"
MONGODB_TIMEOUT_MS = env_int("MONGODB_TIMEOUT_MS", 3000, minimum=100)
MONGODB_QUERY_TIMEOUT_MS = env_int("MONGODB_QUERY_TIMEOUT_MS", 30000, minimum=100)
# Near-copy lookups compare every perceptual hash in each worker's memory, kept current by a
# change stream (replica sets only); off: through the phashBands index alone.
SIMILAR_MEMORY_INDEX = env_bool("SIMILAR_MEMORY_INDEX", True)

# --- Storage ---------------------------------------------------------------------------------
UPLOADS_DIRECTORY = env_directory("UPLOADS_DIRECTORY", "uploads")
S3_BUCKET = env_str("S3_BUCKET")
S3_REGION = env_str("S3_REGION")
S3_PRESIGNED_DOWNLOADS = env_bool("S3_PRESIGNED_DOWNLOADS", False)


def s3_endpoint_url() -> str:
    """S3_ENDPOINT as a URL, or as the original takes it: a bare host with S3_PORT/S3_USE_SSL."""
    endpoint = env_str("S3_ENDPOINT")
    if not endpoint:
        return ""
    if "://" in endpoint:
        if not urlsplit(endpoint).hostname:
            raise SettingError(
                f"S3_ENDPOINT must be a URL such as http://minio:9000, got {endpoint!r}"
            )
        return endpoint
    scheme = "https" if env_bool("S3_USE_SSL", True) else "http"
    port = env_str("S3_PORT")
    return f"{scheme}://{endpoint}:{port}" if port else f"{scheme}://{endpoint}"


S3_ENDPOINT = s3_endpoint_url()

if S3_BUCKET:
    # Imported only for S3: botocore (urllib3, dateutil...) costs memory a local store never uses.
    from botocore.config import Config

    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": S3_ENDPOINT or None,
            "region_name": S3_REGION or None,
            "access_key": env_str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY") or None,
            "file_overwrite": True,
            "default_acl": None,
            "querystring_expire": 300,
            "addressing_style": "path" if S3_ENDPOINT else None,
            # Fail fast when S3 is unreachable (the service answers 503) instead of minutes.
            "client_config": Config(
                connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
            ),
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(UPLOADS_DIRECTORY), "allow_overwrite": True},
    }

STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Uploads: bytes above 1 MiB spill to a temporary file; nothing is read whole into memory.
MAX_UPLOAD_SIZE = env_int("MAX_UPLOAD_SIZE", 100 * 1024 * 1024, minimum=1)
ALLOW_NON_IMAGES = env_bool("ALLOW_NON_IMAGES", False)
# Largest archive accepted by POST /import (0: no limit; it is spooled to a temporary file).
MAX_IMPORT_SIZE = env_int("MAX_IMPORT_SIZE", 0)
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "images.writes.uploads.DigestUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
DATA_UPLOAD_MAX_NUMBER_FILES = 10

# --- Limits (images/limits/) ----------------------------------------------------------------
# Largest `data` of one document, as BSON bytes (upload, import, PATCH, PUT; 413 past it).
MAX_DATA_SIZE = env_int("MAX_DATA_SIZE", 1024 * 1024, minimum=1024)
# Bytes of documents one list, export or change page holds at once (printed or as read from
# MongoDB): a list that fits is answered whole, a larger one streams (images.api.document_lists);
# cursor batches ask for as many documents as fit (images.store.batches).
DOCUMENT_BUFFER_SIZE = env_int("DOCUMENT_BUFFER_SIZE", 4 * 1024 * 1024, minimum=64 * 1024)
# An archive's mongodb_data.json: all of it decompressed, and one of its documents.
MAX_MANIFEST_SIZE = env_int("MAX_MANIFEST_SIZE", 1024 * 1024 * 1024, minimum=1024)
MAX_MANIFEST_ITEM_SIZE = env_int("MAX_MANIFEST_ITEM_SIZE", MAX_DATA_SIZE + 64 * 1024, minimum=1024)
# What one import may decompress in all, and how many times an entry may expand.
MAX_IMPORT_UNPACKED_SIZE = env_int("MAX_IMPORT_UNPACKED_SIZE", 10 * 1024**3, minimum=1)
MAX_COMPRESSION_RATIO = env_int("MAX_COMPRESSION_RATIO", 100, minimum=1)
# Local storage keeps this many bytes free: writes past it are refused (507), readiness fails.
STORAGE_MIN_FREE_SPACE = env_int("STORAGE_MIN_FREE_SPACE", 256 * 1024 * 1024)

# --- Write path (images/writes) --------------------------------------------------------------
# A write lease on a path expires after this many seconds (then a successor recovers the write);
# a writer waits this long for a busy path before answering 503.
WRITE_LEASE_SECONDS = env_int("WRITE_LEASE_SECONDS", 60, minimum=1)
WRITE_LEASE_WAIT_SECONDS = env_int("WRITE_LEASE_WAIT_SECONDS", 15, minimum=0)
# fsync staged bytes and their folders before a document points at them (local disk; about 7 ms
# an upload here): turn off only where the volume's writes survive a power loss anyway.
STORAGE_FSYNC = env_bool("STORAGE_FSYNC", True)

# --- Auth and scope --------------------------------------------------------------------------
OIDC_JWKS_URI = env_str("OIDC_JWKS_URI")
OIDC_AUDIENCE = env_str("OIDC_AUDIENCE")
OIDC_ISSUER = env_str("OIDC_ISSUER")
IMAGE_SCOPE = env_choice("IMAGE_SCOPE", {"", "user"})
USER_IDENTIFIER = env_str("USER_IDENTIFIER", "preferred_username")
SIGNED_URL_LIFETIME = env_int("SIGNED_URL_LIFETIME", 300, minimum=1)
# The user id is the claim verbatim. For data stored by the original service, which kept only
# the text after the last ':', name the exact prefixes to cut (comma-separated), e.g.
# `system:serviceaccount:team-a:`; nothing is cut by default.
USER_ID_STRIP_PREFIX = [p.strip() for p in env_str("USER_ID_STRIP_PREFIX").split(",") if p.strip()]
# The JWKS is cached this many seconds (a removed key stops working after it); an unknown `kid`
# refetches it at most once per cooldown, counted from the end of the last fetch, failed or not
# (images.api.auth.tokens.JWKSClient).
OIDC_JWKS_LIFESPAN = env_int("OIDC_JWKS_LIFESPAN", 300, minimum=1)
OIDC_JWKS_COOLDOWN = env_int("OIDC_JWKS_COOLDOWN", 10, minimum=0)

# --- Public surface: the info page, signed links, response headers ----------------------------
# GET / shows the uploads directory and path-valued MongoDB URI options only when this is true.
SHOW_STORAGE_PATHS = env_bool("SHOW_STORAGE_PATHS", False)


def public_url() -> str:
    """PUBLIC_URL: the base signed links are built on (`https://images.example/api`), or ""."""
    raw = env_str("PUBLIC_URL")
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"PUBLIC_URL must be an http(s) URL without query or fragment, got {raw!r}"
        )
    return raw.rstrip("/")


PUBLIC_URL = public_url()
# Django adds `X-Content-Type-Options: nosniff` to every response (SecurityMiddleware).
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- Thumbnails ------------------------------------------------------------------------------
# Renders at once per process and the decoding memory they may hold together (others wait, at
# most THUMBNAIL_WAIT_SECONDS, then 503; one needing more alone: 422), and the largest source
# image in pixels a thumbnail is made of (422 past it).
THUMBNAIL_CONCURRENCY = env_int("THUMBNAIL_CONCURRENCY", 2, minimum=1)
THUMBNAIL_MEMORY_MB = env_int("THUMBNAIL_MEMORY_MB", 320, minimum=16)
THUMBNAIL_WAIT_SECONDS = env_int("THUMBNAIL_WAIT_SECONDS", 30, minimum=1)
THUMBNAIL_MAX_PIXELS = env_int("THUMBNAIL_MAX_PIXELS", 100_000_000, minimum=1)

# --- Dates -----------------------------------------------------------------------------------
# Zone for date strings without an offset (`from`, `to`, `time`). Django itself runs in UTC.
DATES_TIME_ZONE = env_str("TZ", "UTC") or "UTC"
TIME_ZONE = "UTC"
USE_TZ = True
USE_I18N = False

# --- Django ----------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "images",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "images.api.middleware.request_log.RequestLogMiddleware",
    "images.api.middleware.cors.CorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "images.api.middleware.request_metrics.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "imagestore.urls"
WSGI_APPLICATION = "imagestore.wsgi.application"
DATABASES: dict = {}
APPEND_SLASH = False
STATIC_URL = "/static/"
# Static files (Swagger UI, the gallery) are served from the apps by WhiteNoise, no build step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]


# --- Data keys (GET /fields) -------------------------------------------------------------------
# GET /fields reads the keys of at most this many images, the newest (the original samples 100,000).
FIELDS_SAMPLE_SIZE = env_int("FIELDS_SAMPLE_SIZE", 20000, minimum=1)


# --- CORS (images.api.middleware.cors) ----------------------------------------------------------------------
def cors_allowed_origins() -> tuple[str, ...]:
    """CORS_ALLOWED_ORIGINS: `*` (every origin, as the original) or comma-separated origins."""
    origins = []
    for raw in (env_str("CORS_ALLOWED_ORIGINS") or "*").split(","):
        origin = raw.strip().rstrip("/").lower()
        if not origin:
            continue
        parts = urlsplit(origin)
        if origin not in {"*", "null"} and (
            parts.scheme not in {"http", "https"} or not parts.hostname or parts.path
        ):
            raise ImproperlyConfigured(
                "CORS_ALLOWED_ORIGINS must be * or comma-separated origins such as "
                f"https://gui.example.com, got {raw.strip()!r}"
            )
        origins.append(origin)
    return tuple(origins)


CORS_ALLOWED_ORIGINS = cors_allowed_origins()

REST_FRAMEWORK = {
    # Both do nothing while OIDC_JWKS_URI is unset (read per request).
    "DEFAULT_AUTHENTICATION_CLASSES": ["images.api.auth.authentication.OIDCAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["images.api.auth.authentication.AuthenticatedWhenEnabled"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["images.api.renderers.OrjsonRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "images.api.negotiation.SingleRendererNegotiation",
    "DEFAULT_PARSER_CLASSES": ["images.api.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "images.api.errors.handle_exception",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "imagestore",
    "DESCRIPTION": "Images plus free-form metadata, queried, bulk-edited, exported and imported.",
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs and the schema are public: a token, even a bad one, is not looked at.
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# LOG_FORMAT=json: every log record is one JSON object per line (request lines carry method,
# route, path, status, duration_ms and user as fields).
LOG_FORMAT = env_choice("LOG_FORMAT", {"text", "json"}, "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Control characters in logged values are escaped: no value can start a forged line.
    "filters": {"escape_control": {"()": "images.runtime.log_escaping.EscapeControlCharacters"}},
    "formatters": {
        "text": {
            "()": "images.runtime.log_escaping.OneLineFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["escape_control"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    # libvips reports each step of a render at INFO.
    "loggers": {"django.request": {"level": "ERROR"}, "pyvips": {"level": "WARNING"}},
}
