"""STS on the frontend's AWS endpoint (AWS STS API Reference: GetCallerIdentity, AssumeRole), so
that ``boto3.client("sts")`` pointed at it works unchanged.

AssumeRole is allowed when the role's trust lists the caller (its ARN, its role, or its account)
and the caller's IAM policies allow ``sts:AssumeRole`` on the role (the evaluator decides both);
the root user may not assume roles, as in AWS. The session lasts ``DurationSeconds`` (900 s up to
the role's maximum, one hour here) and its principal is
``arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`` with the role's IAM policies, further limited
by the request's ``Policy`` (a session policy) when given. ``ExternalId`` is accepted (trusts here
have no conditions to check it against); session tags, managed session policies (``PolicyArns``)
and MFA are refused with a ValidationError that says so.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from plumbing.jsontext import loads_bounded

from .. import errors
from .model import Params
from .policy_language import PolicyError, compile_policy
from .principals import Identities, SessionCredentials

if TYPE_CHECKING:
    from .authorization import Caller

MAX_SESSION_S = 3600          # a role's default MaxSessionDuration, and the role-chaining limit
DEFAULT_SESSION_S = 3600


class Sts:
    def __init__(self, identities: Identities) -> None:
        self.identities = identities

    @staticmethod
    def caller_identity(caller: Caller) -> dict[str, str]:
        p = caller.principal
        return {"UserId": p.user_id, "Account": p.account, "Arn": p.arn}

    def assume_role(self, caller: Caller, p: Params) -> SessionCredentials:
        for member, what in (("PolicyArns", "managed session policies (PolicyArns)"), ("Tags", "session tags"),
                             ("TransitiveTagKeys", "session tags"), ("SerialNumber", "MFA"), ("TokenCode", "MFA"),
                             ("ProvidedContexts", "provided contexts")):
            if p.get(member):
                raise errors.ValidationException(
                    f"{member}: {what} are not supported by this endpoint; call AssumeRole without it.")
        duration = p.get("DurationSeconds") or DEFAULT_SESSION_S
        if duration > MAX_SESSION_S:
            chained = caller.principal.kind == "assumed-role"
            raise errors.ValidationException(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
                if chained else "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
        policy = p.get("Policy")
        if policy is not None:
            try:
                compile_policy(loads_bounded(policy), key_policy=False)
            except (ValueError, PolicyError) as exc:
                reason = exc.reason if isinstance(exc, PolicyError) else f"the policy is not valid JSON ({exc})"
                raise errors.MalformedPolicyDocumentException(f"The session policy is not valid: {reason}") from None
        role = self.identities.role(p["RoleArn"])
        assert role is not None  # the evaluator refused unknown roles
        return self.identities.new_session(role, p["RoleSessionName"], duration, policy)
