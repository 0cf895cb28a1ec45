"""`photogen api-keys create|revoke|list`: the operator's (bot owner's) tool for tenants and their keys. It
runs on a host with the order store; there is no HTTP route that makes keys."""

from __future__ import annotations

import time

from storage import api_store, migrate, open_engine
from storage.settings import Settings


def run_api_keys(
    settings: Settings,
    action: str,
    *,
    tenant: str | None,
    scopes: str | None,
    label: str | None,
    key_id: str | None,
    tenant_name: str | None = None,
) -> int:
    migrate(settings.database_url)
    engine = open_engine(settings.database_url)
    try:
        if action == "create":
            if not tenant:
                raise SystemExit("photogen api-keys create: --tenant is required")
            wanted = [s.strip() for s in (scopes or ",".join(api_store.SCOPES)).split(",") if s.strip()]
            try:
                if not api_store.tenant_exists(engine, tenant):
                    api_store.create_tenant(engine, tenant_name or tenant, tenant)
                    print(f"new tenant {tenant}")
                made = api_store.create_key(engine, tenant, wanted, label)
            except api_store.ApiStoreError as err:
                raise SystemExit(f"photogen api-keys create: {err}") from None
            print(f"key {made.key.id} for tenant {tenant}, scopes {' '.join(made.key.scopes)}")
            print("the key (shown once, store it now):")
            print(made.token)
            return 0
        if action == "revoke":
            if not key_id:
                raise SystemExit("photogen api-keys revoke: give the key id (photogen api-keys list)")
            if not api_store.revoke_key(engine, key_id):
                raise SystemExit(f"photogen api-keys revoke: no live key {key_id}")
            print(f"revoked key {key_id}")
            return 0
        for k in api_store.list_keys(engine, tenant):
            state = (
                "revoked " + time.strftime("%Y-%m-%d", time.gmtime(k.revoked_at)) if k.revoked_at else "live"
            )
            print(
                f"{k.id}  tenant={k.tenant_id}  {state}  scopes={','.join(k.scopes)}  {k.label or ''}".rstrip()
            )
        return 0
    finally:
        engine.dispose()
