"""The integrator's signature helper, checked against vectors computed here with hashlib directly."""

import base64
import hashlib
import hmac as std_hmac

import pytest

from collectors.signature import sign, signed_bytes, verify, verify_request

SECRET = "your_secure_token_here"
CLIENT_ID = "018e5b36-e35c-7925-a9de-321ed638b682"
NONCE = "780525611260542810"
TIMESTAMP = "1751284717825"
BODY = b'{"id":"a21eb4cd-367e-485f-932a-397a0951b709","type":"HEALTH_CHECK","payload":{"validation":"hello world"}}'


def independent(alg) -> str:
    mac = std_hmac.HMAC(SECRET.encode(), digestmod=alg)
    for part in (CLIENT_ID.encode(), NONCE.encode(), TIMESTAMP.encode(), BODY):
        mac.update(part)
    return base64.b64encode(mac.digest()).decode()


def test_signed_bytes_are_the_plain_concatenation():
    assert signed_bytes("c", "n", "123", b"{}") == b"cn123{}"


@pytest.mark.parametrize("alg, name", [(hashlib.sha256, "sha256"), (hashlib.sha1, "sha1")])
def test_sign_matches_an_independent_hmac(alg, name):
    assert sign(SECRET, CLIENT_ID, NONCE, TIMESTAMP, BODY, algorithm=name) == independent(alg)


def test_fixed_vector():
    # Computed once with: printf '%s' 'cidn1{}' | openssl dgst -sha256 -hmac s -binary | base64
    assert sign("s", "cid", "n", "1", b"{}") == "kgIcNLHyAKYdC466S/3DRkwp8sqk3Jd6+SXineE4RNQ="


def test_verify_request_accepts_moego_headers_in_any_case():
    headers = {
        "x-moe-client-id": CLIENT_ID,
        "X-MOE-NONCE": NONCE,
        "X-Moe-Timestamp": TIMESTAMP,
        "X-Moe-Signature-256": independent(hashlib.sha256),
        "X-Moe-Signature": independent(hashlib.sha1),
    }
    assert verify_request(SECRET, headers, BODY)
    assert verify_request(SECRET, headers, BODY, algorithm="sha1")


@pytest.mark.parametrize(
    "change",
    ["body", "secret", "nonce", "timestamp", "missing"],
)
def test_any_change_fails_verification(change):
    sig = independent(hashlib.sha256)
    body, secret, nonce, ts = BODY, SECRET, NONCE, TIMESTAMP
    if change == "body":
        body = BODY + b" "
    elif change == "secret":
        secret = SECRET + "x"
    elif change == "nonce":
        nonce = "1"
    elif change == "timestamp":
        ts = str(int(TIMESTAMP) + 1)
    elif change == "missing":
        sig = None
    assert not verify(sig, secret, CLIENT_ID, nonce, ts, body)


def test_empty_secret_never_verifies():
    assert not verify(sign("", CLIENT_ID, NONCE, TIMESTAMP, BODY), "", CLIENT_ID, NONCE, TIMESTAMP, BODY)
