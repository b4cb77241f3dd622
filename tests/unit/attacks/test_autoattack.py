import pytest
import torch

from energybench.attacks.autoattack import run_autoattack


def test_adapter_matches_pyautoattack_and_resumes(trained_model, exact_test, tmp_path):
    """Our adapter vs calling pyautoattack directly: same robust accuracy on the same images;
    a second call with the same state file resumes (no attack is re-run) with the same result."""
    from pyautoattack import AutoAttack

    x, y = exact_test.images[:24].float() / 255, exact_test.labels[:24]
    eps = 1 / 255
    result = run_autoattack(trained_model, x, y, eps=eps, seed=0, batch_size=24,
                            state_path=tmp_path / "aa.json")
    direct = AutoAttack(trained_model, norm="Linf", eps=eps, version="standard", seed=0, device="cpu")
    x_adv, _ = direct.run_standard_evaluation(x, y, batch_size=24)
    with torch.no_grad():
        direct_robust = int((trained_model(x_adv).argmax(1) == y).sum()) / len(y)
        clean = int((trained_model(x).argmax(1) == y).sum()) / len(y)
    assert result.clean_accuracy == pytest.approx(clean)
    assert result.robust_accuracy == pytest.approx(direct_robust)
    assert result.robust_accuracy <= clean and result.robust_flags.shape == (24,)
    assert set(result.per_attack) <= {"apgd-ce", "apgd-t", "fab-t", "square"}
    again = run_autoattack(trained_model, x, y, eps=eps, seed=0, batch_size=24,
                           state_path=tmp_path / "aa.json")
    assert again.robust_accuracy == result.robust_accuracy


def test_a_resumed_chunk_whose_clean_flags_are_not_the_models_is_attacked_again(trained_model, exact_test, tmp_path):
    """An edit that keeps the state's structure and recomputes its digest (which anyone can) is
    caught where re-deriving is cheap: each resumed chunk's clean flags against one forward."""
    import json

    from energybench.attacks.autoattack import _state_digest

    x, y = exact_test.images[:16].float() / 255, exact_test.labels[:16]
    state = tmp_path / "aa.json"
    kwargs = dict(eps=1 / 255, seed=0, batch_size=8, chunk_size=8, state_path=state)
    result = run_autoattack(trained_model, x, y, **kwargs)
    saved = json.loads(state.read_text())
    edited = saved["chunks"]["1"]
    assert edited["clean"] != "1" * 8, "the edit must change something"
    edited["clean"] = "1" * 8
    saved["digest"] = _state_digest(saved["key"], saved["chunks"])
    state.write_text(json.dumps(saved))
    again = run_autoattack(trained_model, x, y, **kwargs)
    assert again.chunks_resumed == 1  # chunk 0 taken as saved, chunk 1 attacked again
    assert torch.equal(again.robust_flags, result.robust_flags)
    assert torch.equal(again.clean_flags, result.clean_flags)
