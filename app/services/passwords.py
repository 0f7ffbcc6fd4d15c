"""Password hashing with argon2id (argon2-cffi's defaults: RFC 9106's low-memory profile).

Hashes carry their own parameters, so raising them later re-hashes old passwords at the next
login (`needs_rehash`). Passwords are never logged and never leave this module in clear.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

MIN_LENGTH = 10
MAX_LENGTH = 1024  # argon2 takes any length; this bounds the work an attacker can ask for

# A valid hash of a password nobody has, checked when the account does not exist, so a wrong
# user name costs as long as a wrong password (no timing oracle for which names exist).
_DUMMY_HASH = _hasher.hash("no such account: this password is never accepted")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
