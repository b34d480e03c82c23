"""Checking that the Chat REST API accepts the worker's credentials (app key, SDKAppID, admin account).

Wrong credentials are the deployment's fault, not a job's: every job would fail the same way. The worker
checks them with one cheap, read-only call before it consumes, and again whenever a job meets a credential
error, and says which settings to look at.
"""

from __future__ import annotations

from worker.tim.errors import TimProtocolError
from worker.tim.history import ApiCaller

CHECK_PATH = "im_open_login_svc/account_check"

#: What to look at for each credential ErrorCode.
HINTS: dict[int, str] = {
    70001: "the UserSig expired: check the machine's clock and RECALL_TIM_USERSIG_TTL_S",
    70002: "no UserSig was sent: check RECALL_TIM_KEY (or RECALL_TIM_KEY_FILE)",
    70003: "the UserSig does not decode: check RECALL_TIM_KEY (or RECALL_TIM_KEY_FILE)",
    70009: "the UserSig's signature is wrong: check RECALL_TIM_KEY (or RECALL_TIM_KEY_FILE) and "
    "RECALL_TIM_SDKAPPID",
    70013: "the UserSig was made for another account: check RECALL_TIM_ADMIN",
    70014: "the UserSig was made for another app: check RECALL_TIM_SDKAPPID",
    70016: "the key was not found for this app: check RECALL_TIM_KEY and RECALL_TIM_SDKAPPID",
    70020: "the SDKAppID is unknown to the service: check RECALL_TIM_SDKAPPID and RECALL_TIM_REGION",
    70050: "too many bad UserSigs: check RECALL_TIM_KEY, then wait before retrying",
    60010: "the identifier is not an app admin: check RECALL_TIM_ADMIN",
}
GENERIC_HINT = "check RECALL_TIM_KEY (or RECALL_TIM_KEY_FILE), RECALL_TIM_SDKAPPID and RECALL_TIM_ADMIN"


def hint(code: int) -> str:
    """Which settings to check for credential ErrorCode ``code``."""
    return HINTS.get(code, GENERIC_HINT)


async def check_credentials(caller: ApiCaller, admin: str) -> None:
    """One ``account_check`` of the admin account: returns if the service accepts the credentials.

    Raises :class:`~worker.tim.errors.TimApiError` with the service's code when it refuses them (see
    :func:`worker.tim.errors.credential_code`), and the other :class:`~worker.tim.errors.TimError`
    subclasses when the service could not be asked.
    """
    reply = await caller.call(CHECK_PATH, {"CheckItem": [{"UserID": admin}]})
    if not isinstance(reply.get("ResultItem"), list):
        raise TimProtocolError("account_check", "ResultItem is not a list")
