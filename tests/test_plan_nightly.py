"""``replenish nightly`` on a copy of the small world: one command, safe to re-run for the same date."""

from __future__ import annotations

import json
import shutil
from datetime import date

import pandas as pd
import yaml
from test_plan_world import run_cli, small_world, tiny_overrides

from forecasting.source.db import open_source
from planning.writeback import read_proposals


def test_nightly_twice_gives_the_same_proposal_and_no_duplicates(tmp_path):
    world = small_world()
    shutil.copy(world.root / "source.db", tmp_path / "source.db")
    shutil.copytree(world.features, tmp_path / "features")
    cfg = tiny_overrides(tmp_path)
    cfg["mlflow"] = {"tracking_uri": str(world.root / "mlruns")}  # the world's champion
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    url = f"sqlite:///{tmp_path / 'source.db'}"
    args = ("nightly", "--date", "2025-12-01", "--db", url, "--config", str(tmp_path / "config.yaml"), "--json")
    code, out, err = run_cli(*args)
    assert code == 0, err
    first = json.loads(out)
    assert first["features"]["mode"] == "incremental" and first["forecast"]["data_date"] == "2025-11-30"
    assert not first["plan"]["failures"] and (tmp_path / "reports" / "2025-12-01" / "index.html").is_file()
    engine, schema = open_source(url)
    a = read_proposals(engine, schema, date(2025, 12, 1))
    code, out, err = run_cli(*args)
    assert code == 0, err
    second = json.loads(out)
    b = read_proposals(engine, schema, date(2025, 12, 1))
    assert second["plan"]["written"]["deleted"] == len(a) == len(b)
    cols = ["store_id", "material_id", "qty", "packs", "delivery_date", "reason_codes", "model_version"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
