"""botocore's and s3transfer's errors, turned here and nowhere else into one-line StoreErrors.

``translated`` wraps the requests of a store; ``client_error`` words the answer of one
that failed; the sets below sort S3's error codes into what dmp does about them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError
from s3transfer.exceptions import (
    RetriesExceededError,
    S3DownloadFailedError,
    S3UploadFailedError,
)

from dmp_cli.errors import ColdObject, FatalStoreError, ObjectMissing, StoreError

THROTTLED = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestThrottled",
    "503",
}
DENIED = {"AccessDenied", "403", "AllAccessDisabled", "AccountProblem"}
BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}
MISSING = {"404", "NoSuchKey", "NotFound"}
PRECONDITION_FAILED = {"PreconditionFailed", "412"}
# A storage class (--storage-class) that the store does not offer.
REFUSED_CLASS = {"InvalidStorageClass"}
# A store (or a user's policy) without ListMultipartUploads or AbortMultipartUpload.
NO_UPLOAD_LISTING = DENIED | {"NotImplemented", "501", "MethodNotAllowed", "405"}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def retried(exc: ClientError) -> bool:
    """Whether botocore's answer came after attempts whose own answers were lost."""
    return bool(exc.response.get("ResponseMetadata", {}).get("RetryAttempts"))


@contextmanager
def translated(url: str, missing: str | None = None) -> Iterator[None]:
    """Turn botocore's exceptions into one-line StoreErrors naming ``url``."""
    try:
        yield
    except ClientError as exc:
        raise client_error(exc, url, missing) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise FatalStoreError(
            f"{url}: no AWS credentials found (set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use "
            "--profile)"
        ) from exc
    except EndpointConnectionError as exc:
        # Fatal if it lasts: tried again first, in case the network only blinked.
        endpoint = exc.kwargs.get("endpoint_url", "")
        raise FatalStoreError(
            f"{url}: cannot connect to the S3 endpoint {endpoint}", transient=True
        ) from exc
    except BotoCoreError as exc:
        raise StoreError(f"{url}: {_describe(exc)}", transient=_transient(exc)) from exc
    except (RetriesExceededError, S3DownloadFailedError, S3UploadFailedError) as exc:
        # s3transfer's own retries of a body cut short, a reset, a timeout ran out.
        cause = getattr(exc, "last_exception", None) or exc.__cause__ or exc
        raise StoreError(f"{url}: {_describe(cause)}", transient=True) from exc
    except (ConnectionError, TimeoutError) as exc:  # sockets, below botocore's own errors
        raise StoreError(f"{url}: {_describe(exc)}", transient=True) from exc
    except KeyError as exc:
        # What these blocks run is requests: a field missing is an answer that did not
        # parse whole (cut inside its headers, which the HTTP client accepts as ended).
        raise StoreError(
            f"{url}: an answer came without its {exc} (cut short?)", transient=True
        ) from exc
    except ResponseParserError as exc:
        raise StoreError(
            f"{url}: an answer that does not parse: {_describe(exc)}", transient=True
        ) from exc


def _transient(exc: BotoCoreError) -> bool:
    """A connection refused, reset or timed out, a response cut short: worth a retry."""
    return isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError)


def _describe(exc: BaseException) -> str:
    """The error in one line (some of botocore's messages run over several)."""
    text = str(exc) if not isinstance(exc, OSError) else (exc.strerror or str(exc))
    return " ".join(text.split()) or type(exc).__name__


def client_error(exc: ClientError, url: str, missing: str | None = None) -> StoreError:
    """The one-line error for a failed request; ``missing`` words a 404 where one means
    that the thing asked for is absent (a GET or HEAD), not that a PUT failed."""
    code = error_code(exc)
    error = exc.response.get("Error", {})
    attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
    if code == "NoSuchBucket" or (code in MISSING and missing == "no such bucket"):
        bucket = error.get("BucketName") or url.split("/")[2]
        return FatalStoreError(f"s3://{bucket}: no such bucket")
    if code in MISSING and missing:
        return ObjectMissing(f"{url}: {missing}")
    if code == "InvalidObjectState" and missing:  # a read of an object not restored
        return ColdObject(f"{url}: in cold storage, not readable until restored")
    if code in DENIED:
        return FatalStoreError(
            f"{url}: access denied (check the credentials, the profile and the bucket policy)"
        )
    if code in BAD_CREDENTIALS:
        return FatalStoreError(f"{url}: credentials rejected ({code})")
    if code in THROTTLED:
        return StoreError(
            f"{url}: throttled by the server ({code}) after {attempts} attempts", transient=True
        )
    http = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = error.get("Message") or http or ""
    server_side = (isinstance(http, int) and http >= 500) or code.startswith("5")
    if code in REFUSED_CLASS:  # every upload of the run asks for it: the run stops
        return FatalStoreError(f"{url}: {code}: {message}".rstrip(": "))
    return StoreError(f"{url}: {code}: {message}".rstrip(": "), transient=server_side)
