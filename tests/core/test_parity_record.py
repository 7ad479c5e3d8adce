"""The one parity record an artifact carries, judged against the one table of limits."""

from vaegan.core.contract import PARITY_LIMITS, Parity


def test_limits_and_units_per_component():
    assert Parity("torch", "decoder", 1.0).within_limit
    assert not Parity("torch", "decoder", 2.0).within_limit
    assert Parity("torch", "encoder", PARITY_LIMITS["encoder"]).within_limit
    assert not Parity("torch", "encoder", 0.02).within_limit
    assert Parity("fp32", "decoder", 3, 0.25).to_dict() == {
        "vs": "fp32",
        "max_abs_error": 3,
        "mean_abs_error": 0.25,
        "unit": "grey levels",
    }


def test_the_torch_comparison_keeps_its_batches():
    d = Parity("torch", "encoder", 1e-4, per_batch={"1": 1e-4, "7": 5e-5}).to_dict()
    assert d["batches"] == [1, 7] and d["per_batch"] == {"1": 1e-4, "7": 5e-5} and d["unit"] == "mu"
    assert "mean_abs_error" not in d


def test_the_fixtures_artifacts_carry_parity_records(art_dir):
    from vaegan.core.manifest import Manifest

    for a in Manifest.load(art_dir).artifacts:
        if a.format == "onnx":
            assert a.parity["unit"] == ("grey levels" if a.component == "decoder" else "mu")
            if a.precision == "fp32":
                assert a.parity["vs"] == "torch"
                assert a.parity["max_abs_error"] <= PARITY_LIMITS[a.component]
