"""AWS failures as user-facing errors: each names what went wrong and what to do, never a secret."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
    UnknownEndpointError,
)

from app.errors import TerminalError
from app.ssh.errors import HostKeyNotVerifiable
from app.terminal.closecodes import CloseCode

POLICY_HINT = "see docs/ec2.md for the IAM policy each mode needs"


class AwsError(TerminalError):
    """An AWS API call failed."""

    code = "aws_error"
    close_code = CloseCode.NORMAL


class AwsCredentialsMissing(AwsError):
    """No credentials anywhere in the AWS credential chain."""

    code = "aws_no_credentials"


class AwsCredentialsRejected(AwsError):
    """AWS refused the credentials themselves (unknown, expired, bad signature)."""

    code = "aws_credentials_rejected"


class AwsAccessDenied(AwsError):
    """The credentials work but their policy does not allow the call."""

    code = "aws_access_denied"


class AwsThrottled(AwsError):
    """AWS kept throttling after botocore's retries with backoff."""

    code = "aws_throttled"
    close_code = CloseCode.TRY_AGAIN_LATER


class AwsRegionUnknown(AwsError):
    """The region is missing or not one botocore knows."""

    code = "aws_unknown_region"


class AwsUnreachable(AwsError):
    """The AWS API endpoint could not be reached."""

    code = "aws_unreachable"
    close_code = CloseCode.TRY_AGAIN_LATER


class InstanceNotFound(AwsError):
    """The instance id is malformed or names no instance in this account and region."""

    code = "instance_not_found"


class InstanceIdMalformed(InstanceNotFound):
    """AWS refused the instance id as malformed (not `i-` and 8 or 17 hex digits)."""

    code = "instance_id_malformed"


class InstanceNotRunning(AwsError):
    """The instance exists but is not in the running state."""

    code = "instance_not_running"
    close_code = CloseCode.TRY_AGAIN_LATER


class InstanceAddressMissing(AwsError):
    """The instance has no address of the requested kind."""

    code = "instance_no_address"


class ConsoleHostKeysMissing(HostKeyNotVerifiable):
    """The console output lists no SSH host keys yet, so no key can be trusted: fail closed."""

    code = "host_keys_not_on_console"
    close_code = CloseCode.TRY_AGAIN_LATER


_CREDENTIALS_REJECTED = {
    "AuthFailure",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "AuthException",
}
_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}
_MALFORMED = {"InvalidInstanceID.Malformed"}
_NOT_FOUND = {"InvalidInstanceID.NotFound", "EC2InstanceNotFoundException"}
_NOT_RUNNING = {
    "EC2InstanceStateInvalidException",
    "EC2InstanceUnavailableException",
    "IncorrectInstanceState",
}


def state_advice(state: str) -> str:
    """What to do about an instance in `state` that should be running."""
    if state == "pending":
        return "wait until it is running and try again"
    if state in ("stopped", "stopping"):
        return "start it and try again"
    if state in ("terminated", "shutting-down"):
        return "a terminated instance cannot be reached; use another instance"
    return "try again once it is running"


def _not_running(
    instance_id: str, where: str, action: str, code: str, state: str | None
) -> InstanceNotRunning:
    answered = f"{action} answered {code}"
    if state is None or state == "running":
        # The call said "not running" although DescribeInstances had just said running: the
        # instance is between states (stopping, rebooting) or its state is unknown.
        return InstanceNotRunning(
            f"instance {instance_id}{where} is not running ({answered}); check its state, "
            "start it if it is stopped, and try again"
        )
    return InstanceNotRunning(
        f"instance {instance_id}{where} is {state}, not running ({answered}); {state_advice(state)}"
    )


def _client_error(
    exc: ClientError, action: str, instance_id: str, region: str | None, state: str | None
) -> AwsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    where = f" in {region}" if region else ""
    if code in _CREDENTIALS_REJECTED:
        return AwsCredentialsRejected(
            f"AWS rejected the credentials while calling {action} ({code}): they are unknown, "
            "expired or for another partition; refresh them"
        )
    if code in _ACCESS_DENIED:
        return AwsAccessDenied(
            f"the AWS credentials are not allowed to call {action} on instance "
            f"{instance_id}{where} ({code}); {POLICY_HINT}"
        )
    if code in _THROTTLED:
        return AwsThrottled(
            f"AWS throttled {action} ({code}) even after retries with backoff; try again shortly"
        )
    if code in _MALFORMED:
        return InstanceIdMalformed(
            f"instance id {instance_id!r} is malformed ({code}): it must look like "
            "i-0123456789abcdef0; check --instance-id"
        )
    if code in _NOT_FOUND:
        return InstanceNotFound(
            f"instance {instance_id} does not exist{where} in this account ({code}); "
            "check --instance-id and --region"
        )
    if code in _NOT_RUNNING:
        return _not_running(instance_id, where, action, code, state)
    if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
        return AwsAccessDenied(
            f"AWS refused {action} on instance {instance_id}{where} ({code}); {POLICY_HINT}"
        )
    # AWS error messages describe the request, not credentials, so they are safe to show.
    message = str(error.get("Message", ""))[:300]
    return AwsError(
        f"AWS call {action} for instance {instance_id}{where} failed: {code}: {message}"
    )


def aws_error(
    exc: Exception,
    action: str,
    instance_id: str,
    region: str | None = None,
    state: str | None = None,
) -> TerminalError:
    """The user-facing error for a boto3 call's exception, naming `region` and `state` if known."""
    if isinstance(exc, TerminalError):
        return exc
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return AwsCredentialsMissing(
            f"no usable AWS credentials for {action}: set AWS_PROFILE, AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, a web identity (IRSA) or an instance/pod role "
            f"({type(exc).__name__})"
        )
    if isinstance(exc, NoRegionError):
        return AwsRegionUnknown("no AWS region configured: set --region or AWS_REGION")
    if isinstance(exc, UnknownEndpointError):
        return AwsRegionUnknown(f"AWS has no endpoint for {action} in that region: check --region")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        url = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS API")
        return AwsUnreachable(
            f"could not reach {url} for {action}: check --region, --endpoint-url and the "
            "network path to AWS"
        )
    if isinstance(exc, ClientError):
        return _client_error(exc, action, instance_id, region, state)
    if isinstance(exc, BotoCoreError):
        return AwsError(f"AWS call {action} for instance {instance_id} failed: {exc}")
    return AwsError(f"AWS call {action} for instance {instance_id} failed: {type(exc).__name__}")
