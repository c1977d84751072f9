"""The CLI against a real marketplace: what the guides do not show."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.e2e.cluster import OPERATOR_ID, OPERATOR_SECRET, Cluster

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sluice(live_marketplace: Cluster, tmp_path_factory: pytest.TempPathFactory):
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NO_COLOR": "1",
           "HOME": str(tmp_path_factory.mktemp("home")),
           "SLUICE_CLIENT_ID": OPERATOR_ID, "SLUICE_CLIENT_SECRET": OPERATOR_SECRET,
           **{f"SLUICE_{s.upper()}_URL": u for s, u in live_marketplace.urls.items()}}

    def run(*argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sluice.cli", *argv], env={**env, **extra},
                              capture_output=True, text=True, timeout=60, check=False)
    return run


def test_all_pages_are_followed(sluice) -> None:
    tag = uuid.uuid4().hex[:6]
    made = {sluice("orgs", "create", "--name", f"Paging {tag} {i}", "--roles", "buyer", "--field", "id").stdout.strip()
            for i in range(3)}
    one = sluice("orgs", "list", "--role", "buyer", "--limit", "1", "-o", "json")
    assert json.loads(one.stdout)["next_cursor"]
    every = sluice("orgs", "list", "--role", "buyer", "--limit", "1", "--all", "--field", "id")
    assert every.returncode == 0, every.stderr
    assert made <= set(every.stdout.split())


def test_a_cursor_continues_where_the_page_ended(sluice) -> None:
    first = json.loads(sluice("clients", "list", "--limit", "1", "-o", "json").stdout)
    second = json.loads(sluice("clients", "list", "--limit", "1", "--cursor", first["next_cursor"],
                               "-o", "json").stdout)
    assert first["items"][0]["client_id"] != second["items"][0]["client_id"]


def test_a_problem_is_shown_with_what_to_do_and_exit_1(sluice) -> None:
    shown = sluice("orgs", "create", "--name", "x", "--roles", "wizard")
    assert shown.returncode == 1
    err = shown.stderr
    assert "422" in err and "validation-error" in err and "body.roles" in err
    assert "what to do" in err


def test_a_wrong_secret_is_the_oauth_error_readably(sluice) -> None:
    shown = sluice("me", SLUICE_CLIENT_SECRET="wrong")
    assert shown.returncode == 1 and "invalid_client" in shown.stderr
    assert "SLUICE_CLIENT_ID" in shown.stderr  # what to do: check the credentials


def test_yaml_output_after_the_subcommand(sluice) -> None:
    out = sluice("signing-keys", "list", "--output", "yaml")
    assert out.returncode == 0 and "status: active" in out.stdout


def test_a_whole_token_is_printed_for_scripts(sluice) -> None:
    token = sluice("token", "--field", "access_token").stdout.strip()
    assert token.count(".") == 2 and len(token) > 300 and "\n" not in token


def test_a_regulator_rejects_a_draft_under_review(sluice, live_marketplace: Cluster) -> None:
    from sluice.client import Endpoints, SluiceClient
    from sluice.demo import product_specs

    urls = live_marketplace.urls
    endpoints = Endpoints(access=urls["access"], catalog=urls["catalog"], orders=urls["orders"],
                          audit=urls["audit"], dataservice=urls["dataservice"])
    with SluiceClient(OPERATOR_ID, OPERATOR_SECRET, endpoints) as op:
        creds = {}
        for role in ("provider", "regulator"):
            org = op.create_organisation(f"Reject {role} {uuid.uuid4().hex[:6]}", [role])
            creds[role] = op.create_api_client(org["id"], role)
    provider = SluiceClient(creds["provider"]["client_id"], creds["provider"]["client_secret"], endpoints)
    health = provider.create_product(product_specs(urls["dataservice"], uuid.uuid4().hex[:6])[1])
    provider.submit_product(health["id"])
    as_regulator = {"SLUICE_CLIENT_ID": creds["regulator"]["client_id"],
                    "SLUICE_CLIENT_SECRET": creds["regulator"]["client_secret"]}
    rejected = sluice("products", "reject", health["id"], "--reason", "Attestation lacks the date.",
                      "--field", "status", **as_regulator)
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout.strip() == "draft"
    again = sluice("products", "reject", health["id"], "--reason", "Twice.", **as_regulator)
    assert again.returncode == 1 and "not-in-review" in again.stderr
    provider.close()


def test_runs_share_one_token_and_a_refused_one_is_replaced(sluice, tmp_path) -> None:
    home = {"HOME": str(tmp_path)}
    first = sluice("me", "--field", "token_id", **home)
    second = sluice("me", "--field", "token_id", **home)
    assert first.returncode == 0 and first.stdout == second.stdout  # the same token, not a new one
    [cached] = (tmp_path / ".cache" / "sluice").glob("token-*.json")
    cached.write_text(cached.read_text().replace('"access_token": "', '"access_token": "x'))
    third = sluice("me", "--field", "token_id", **home)
    assert third.returncode == 0, third.stderr  # the broken token was refused, a new one fetched
    assert third.stdout != first.stdout
    wrong = sluice("me", SLUICE_CLIENT_SECRET="wrong", **home)
    assert wrong.returncode == 1 and "invalid_client" in wrong.stderr


def test_a_client_rotates_its_own_secret_and_both_work_during_the_overlap(sluice) -> None:
    org = sluice("orgs", "create", "--name", f"Rotating {uuid.uuid4().hex[:6]}", "--roles", "buyer",
                 "--field", "id").stdout.strip()
    made = sluice("clients", "create", "--org", org, "--name", "rotator", "--field", "client_id",
                  "--field", "client_secret")
    cid, old = made.stdout.split()
    as_client = {"SLUICE_CLIENT_ID": cid, "SLUICE_CLIENT_SECRET": old}
    rotated = sluice("clients", "rotate-own-secret", "--old-secret-expires-in", "600", "-o", "json", **as_client)
    assert rotated.returncode == 0, rotated.stderr
    body = json.loads(rotated.stdout)
    assert body["client_id"] == cid and body["previous_secret_expires_at"]
    for secret in (old, body["client_secret"]):
        # The token cache is keyed by the secret, so each secret really logs in.
        me = sluice("me", "--field", "subject", SLUICE_CLIENT_ID=cid, SLUICE_CLIENT_SECRET=secret)
        assert me.returncode == 0 and me.stdout.strip() == cid, me.stderr
