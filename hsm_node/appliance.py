"""The appliance user (AU): the CloudHSM service's own user on every HSM.

CloudHSM keeps an appliance user, ``app_user``, on each HSM for the service's housekeeping
(cloning, synchronisation, backups); it cannot see or use keys. Here it is how the control plane
(``cloudhsmv2`` CreateHsm, DeleteHsm, the automatic replacement of a failed HSM, backup
retention) adds and removes members and takes backups without the customer's CO credentials.

Its credential is a deployment secret given to the nodes and to the control plane alone
(``--appliance-key-file``, ``HSM_APPLIANCE_KEY_FILE``), never stored in a node's data directory.
A node without one refuses every AU login. An AU session may do what
:data:`hsm_node.membership.MANAGERS` allows: add and remove members, take backups, set their
retention; it owns no key and manages no user.
"""
from __future__ import annotations

import hashlib
import hmac

from .errors import LOGIN_FAILED, Unauthenticated
from .login_sessions import LoginSession, LoginSessions
from .rules import APPLIANCE_USERNAME


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(b"hsm-node appliance user\0" + secret).digest()


class ApplianceUser:
    def __init__(self, secret: bytes, sessions: LoginSessions) -> None:
        self._expected = _digest(secret.strip()) if secret.strip() else b""
        self.sessions = sessions

    def login(self, username: str, password: str, client_id: str = "") -> LoginSession:
        """Open an AU session; the same refusal as a wrong password for anything else."""
        given = _digest(password.encode())
        if not self._expected or username.lower() != APPLIANCE_USERNAME \
                or not hmac.compare_digest(given, self._expected):
            raise Unauthenticated(LOGIN_FAILED)
        return self.sessions.open(APPLIANCE_USERNAME, 0, "AU", client_id)
