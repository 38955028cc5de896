"""SX-RDS-6: a change the target acknowledges but does not make is FAIL (the cheapest cheat on online DDL)."""

from __future__ import annotations

import json

import pytest

from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import vendor_profile

#: An event trigger that arms every oltp_settlement table, once altered, with a trigger that silently drops the
#: batched update (the UPDATE "succeeds", no row changes): a target that acknowledges what it does not do.
SWALLOW = """
CREATE OR REPLACE FUNCTION public.cp_swallow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.note = 'checked' THEN RETURN NULL; END IF; RETURN NEW; END $$;
CREATE OR REPLACE FUNCTION public.cp_arm() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE object_identity LIKE '%.oltp_settlement' LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = r.objid AND tgname = 'cp_swallow') THEN
      EXECUTE format('CREATE TRIGGER cp_swallow BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION public.cp_swallow()',
                     r.object_identity);
    END IF;
  END LOOP;
END $$;
CREATE EVENT TRIGGER cp_arm ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION public.cp_arm();
"""
UNDO = (
    "DROP EVENT TRIGGER IF EXISTS cp_arm; DROP FUNCTION IF EXISTS public.cp_arm(); "
    "DROP FUNCTION IF EXISTS public.cp_swallow();"
)


def test_an_update_acknowledged_but_not_made_fails(project: pytest.Pytester, pg_server: EmbeddedPostgres) -> None:
    with pg_server.connect(in_namespace=False) as conn, conn.cursor() as cur:
        cur.execute(SWALLOW)
    try:
        profile = vendor_profile(project.path / "vendor.toml", pg_server)
        result = project.runpytest("suites/online_ddl", f"--cp-target={profile}", "--cp-scale=0.05", "-k", "online")
    finally:
        with pg_server.connect(in_namespace=False) as conn, conn.cursor() as cur:
            cur.execute(UNDO)
    result.assert_outcomes(failed=1)
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    row = next(r for r in doc["clause_rows"] if r["id"] == "SX-RDS-6")
    assert row["verdict"] == "FAIL"  # at a reduced scale too: the result is wrong
    assert "the batched update left 10,000 of 10,000 pre-loaded rows unchanged" in row["reason"]
    case = next(c for c in doc["cases"] if "online" in c["nodeid"])
    update = next(s for s in case["parameters"]["steps"] if s["step"] == "batched update")
    assert update["rows_the_server_reported_updated"] == 0
