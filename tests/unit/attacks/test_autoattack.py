import numpy as np
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


def test_a_custom_attack_list_runs_those_attacks_as_pyautoattack_does(trained_model, exact_test, exact_npz, tmp_path):
    """version=custom with attacks (pyautoattack's attacks_to_run): the record names them, runs
    only them, and equals pyautoattack's own custom run; standard records keep no attacks key."""
    from pyautoattack import AutoAttack

    from energybench.api import evaluate

    (record,) = evaluate(trained_model, str(exact_npz), ["autoattack"], n=16, out_dir=tmp_path, device="cpu",
                         batch_size=16, eps=1 / 255, version="custom", attacks="apgd-ce,square")
    assert list(record["params"]["attacks"]) == ["apgd-ce", "square"] and set(record["extra"]["per_attack"]) <= {
        "apgd-ce", "square"}
    x, y = exact_test.images[:16].float() / 255, exact_test.labels[:16]
    direct = AutoAttack(trained_model, norm="Linf", eps=1 / 255, version="custom", attacks=["apgd-ce", "square"],
                        seed=0, device="cpu")
    x_adv, _ = direct.run_standard_evaluation(x, y, batch_size=16)
    with torch.no_grad():
        robust = ((trained_model(x_adv).argmax(1) == y) & (trained_model(x).argmax(1) == y)).float().mean()
    assert record["value"] == pytest.approx(float(robust))
    from energybench.metrics import METRICS

    metric = METRICS.get("autoattack")
    assert "attacks" not in metric(metric.Params()).protocol()  # standard records keep their identity


@pytest.mark.parametrize("values, message", [
    ({"version": "custom"}, r"attacks must name the attacks of version custom"),
    ({"version": "custom", "attacks": ("apgd-ce", "pgd")}, r"attacks must be distinct names among apgd-ce"),
    ({"version": "standard", "attacks": ("square",)}, r"attacks chooses the attacks of version custom only"),
])
def test_custom_attack_lists_are_checked(values, message):
    from energybench.core.validation import RangeError
    from energybench.metrics.autoattack_metric import AutoAttackParams

    with pytest.raises(RangeError, match=message):
        AutoAttackParams(**values)


def test_saved_adversarial_images_are_pyautoattacks_own_and_survive_a_resume(trained_model, exact_test, exact_npz,
                                                                           tmp_path):
    """--save-adversarial on autoattack: the saved images are exactly the ones pyautoattack's own
    run returns (same seed), inside the eps-ball and [0, 1], with the record's adv_correct; a
    chunk whose saved images are deleted is attacked again and gives the same images."""
    from pyautoattack import AutoAttack

    from energybench.api import evaluate

    eps, kwargs = 2 / 255, dict(version="custom", attacks="apgd-ce")
    (record,) = evaluate(trained_model, str(exact_npz), ["autoattack"], n=16, out_dir=tmp_path, device="cpu",
                         batch_size=8, eps=eps, chunk_size=8, save_adversarial=True, **kwargs)
    saved = np.load(tmp_path / record["extra"]["adversarial"])
    x, y = exact_test.images[:16].float() / 255, exact_test.labels[:16]
    images = torch.from_numpy(saved["images"])
    assert images.shape == (16, 3, 32, 32) and list(saved["index"]) == list(range(16))
    assert (images - x).abs().max() <= eps + 1e-6 and images.min() >= 0 and images.max() <= 1
    direct = []
    for start in (0, 8):  # the metric attacks chunks of 8, each a fresh run with the same seed
        adversary = AutoAttack(trained_model, norm="Linf", eps=eps, version="custom", attacks=["apgd-ce"],
                               seed=0, device="cpu")
        direct.append(adversary.run_standard_evaluation(x[start:start + 8], y[start:start + 8], batch_size=8)[0])
    torch.testing.assert_close(images, torch.cat(direct), rtol=0, atol=0)
    with torch.no_grad():
        assert np.array_equal(saved["adv_correct"], (trained_model(images).argmax(1) == y).numpy())
    assert saved["adv_correct"].sum() < 16, "the attack must break something for the check to mean anything"

    chunk_file = next(tmp_path.glob("autoattack-*.state.chunk-1.adversarial.npz"))
    chunk_file.unlink()
    (tmp_path / record["extra"]["adversarial"]).unlink()  # the record is kept without its images
    (third,) = evaluate(trained_model, str(exact_npz), ["autoattack"], n=16, out_dir=tmp_path, device="cpu",
                        batch_size=8, eps=eps, chunk_size=8, save_adversarial=True, **kwargs)
    assert third["value"] == record["value"] and third["extra"]["chunks_resumed"] == 1  # chunk 0's images were kept; chunk 1's attacked again
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / third["extra"]["adversarial"])["images"]), images,
                               rtol=0, atol=0)
