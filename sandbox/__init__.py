"""A local HTTP sandbox speaking the Perform & Engage 365, onQ and Respondent APIs.

    from sandbox import Sandbox, SandboxSettings, FaultSettings

    with Sandbox(SandboxSettings(faults=FaultSettings(rate=0.2, seed=3))) as sb:
        config = sb.tap_config()
        ...
        assert not sb.early_retries

Only the standard library and PyJWT are used, so it runs anywhere the tap's tests run.
"""

from sandbox.app import PROVIDER_TYPES, Sandbox
from sandbox.churn import CHURN_KINDS, Churn, ChurnLog
from sandbox.data import MutationResult
from sandbox.onq import AcceptedToken
from sandbox.server import LoggedRequest
from sandbox.settings import (
    ALL_FAULT_KINDS,
    ONQ_API_KEY,
    ONQ_API_SECRET,
    ONQ_AUDIENCE,
    ONQ_ISSUER,
    ONQ_SUBJECT,
    PE_API_KEY,
    PE_USERNAME,
    PROVIDERS,
    RESPONDENT_API_KEY,
    RESPONDENT_API_SECRET,
    FaultSettings,
    SandboxSettings,
)

#: Every credential value; none of them may ever show up in the tap's output or logs.
SECRETS: tuple[str, ...] = (PE_API_KEY, ONQ_API_SECRET, RESPONDENT_API_KEY, RESPONDENT_API_SECRET)

__all__ = [
    "ALL_FAULT_KINDS",
    "CHURN_KINDS",
    "ONQ_API_KEY",
    "ONQ_API_SECRET",
    "ONQ_AUDIENCE",
    "ONQ_ISSUER",
    "ONQ_SUBJECT",
    "PE_API_KEY",
    "PE_USERNAME",
    "PROVIDERS",
    "PROVIDER_TYPES",
    "RESPONDENT_API_KEY",
    "RESPONDENT_API_SECRET",
    "SECRETS",
    "AcceptedToken",
    "Churn",
    "ChurnLog",
    "FaultSettings",
    "LoggedRequest",
    "MutationResult",
    "Sandbox",
    "SandboxSettings",
]
