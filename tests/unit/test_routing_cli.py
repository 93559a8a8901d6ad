"""``techshop models list|show|promote|canary|shadow|rollback|export`` and
``techshop train fraud --from-file`` on a registry in a temporary data dir (``--offline``:
no broker; announcing is covered by the end-to-end test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.fraud.features import FEATURE_NAMES
from models.registry import open_registry
from scorers.rules import RulesScorer
from streams.cli import main
from tests.unit.test_drift_retrain import T0, examples, stream


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TECHSHOP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TECHSHOP_MODEL_DIR", raising=False)
    monkeypatch.delenv("TECHSHOP_MODEL_SIGNING_KEY", raising=False)
    registry = open_registry(tmp_path / "models")
    for name in ("fraud_gbdt", "fraud_gbdt", "fraud_river"):
        registry.publish_scorer(RulesScorer(FEATURE_NAMES), name=name,
                                thresholds={"review": 0.5, "decline": 0.8},
                                metrics={"valid_auc": 0.9, "n_train": 1000})
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_promote_canary_rollback_show_export(data_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list")
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert code == 0 and set(lines) == {"fraud_gbdt@1", "fraud_gbdt@2", "fraud_river@1"}
    assert "auc 0.9000" in lines["fraud_gbdt@1"] and "0.500/0.800" in lines["fraud_gbdt@1"]
    assert lines["fraud_gbdt@2"].endswith("fraud:champion")
    assert lines["fraud_river@1"].endswith("fraud:challenger")

    assert run(capsys, "models", "challenge", "fraud", "fraud_gbdt@1", "--offline")[0] == 0
    code, out, _ = run(capsys, "models", "canary", "fraud", "25", "--offline")
    assert out.strip() == ("fraud: champion fraud_gbdt@2, challenger fraud_gbdt@1, "
                           "canary 25%")
    assert "fraud:challenger(canary 25%)" in run(capsys, "models", "list")[1]
    assert "shadow" in run(capsys, "models", "shadow", "fraud", "--offline")[1]
    code, out, _ = run(capsys, "models", "promote", "fraud", "--offline")
    assert out.strip() == "fraud: champion fraud_gbdt@1, challenger None, shadow"
    code, out, _ = run(capsys, "models", "rollback", "fraud", "--offline")
    assert out.strip() == "fraud: champion fraud_gbdt@2, challenger fraud_gbdt@1, shadow"
    routing = json.loads(run(capsys, "models", "show", "fraud")[1])
    assert routing["revision"] == 5 and routing["history"][-1]["action"] == "rollback"
    manifest = json.loads(run(capsys, "models", "show", "fraud_gbdt", "champion")[1])
    assert manifest["version"] == "2" and "thresholds.json" in manifest["files"]
    code, out, _ = run(capsys, "models", "export", "fraud_gbdt", "challenger",
                       str(data_dir / "out"))
    assert Path(out.strip()) == data_dir / "out" / "fraud_gbdt-1"
    assert (data_dir / "out" / "fraud_gbdt-1" / "manifest.json").is_file()


def test_bad_arguments_are_one_readable_line(data_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "models", "rollback", "fraud", "--offline")
    assert code == 2 and err.strip() == ("techshop: error: fraud has no earlier champion "
                                         "to roll back to")
    code, _, err = run(capsys, "models", "canary", "fraud", "150", "--offline")
    assert code == 2 and "within 0..100" in err and len(err.strip().splitlines()) == 1
    (data_dir / "bad.jsonl").write_text('{"model": "fraud"}\n')
    code, _, err = run(capsys, "train", "fraud", "--from-file", str(data_dir / "bad.jsonl"),
                       "--offline")
    assert code == 2 and "line 1: not a training example" in err
    code, _, err = run(capsys, "train", "fraud", "--from-file", str(data_dir / "none.jsonl"))
    assert code == 2 and "No such file" in err


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_train_fraud_from_a_file_registers_the_challenger(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, y, _, txns = stream(5, 20_000, T0)
    path = data_dir / "examples.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in examples(X, y, txns)))
    code, out, err = run(capsys, "train", "fraud", "--from-file", str(path), "--trees", "50",
                         "--offline")
    assert code == 0, err
    assert out.startswith("fraud_gbdt@3 is the fraud challenger (champion fraud_gbdt@2)")
    assert "registered fraud_gbdt@3" in err  # progress on stderr
    manifest = json.loads(run(capsys, "models", "show", "fraud_gbdt", "3")[1])
    assert manifest["lineage"]["trainer"] == "offline"
    assert manifest["lineage"]["data_range"] == [txns[0]["ts"], txns[-1]["ts"]]
    assert manifest["lineage"]["n_examples"] == 20_000
    assert "reference.json" in manifest["files"]
    assert manifest["metrics"]["valid_auc"] > 0.9
