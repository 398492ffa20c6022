"""Method parameters are checked up front: a name the method does not take is a ParamError
naming the valid ones, never a method skipped with a warning."""

from __future__ import annotations

import pytest

import cnnvis
from cnnvis.errors import MethodError, ParamError
from cnnvis.methods import check_params, get_method, list_methods


def test_unknown_parameter_of_a_method_without_parameters(tiny_cnn, tiny_input):
    with pytest.raises(ParamError, match="grad-cam has no parameter 'foo'; it takes no") as info:
        cnnvis.explain(tiny_cnn, tiny_input, "grad-cam", foo=3)
    assert isinstance(info.value, MethodError) and info.value.exit_code == 9


def test_explain_reads_explain_manys_spelling_too(tiny_cnn, tiny_input):
    with pytest.raises(ParamError, match="grad-cam has no parameter 'foo'"):
        cnnvis.explain(tiny_cnn, tiny_input, "grad-cam", params={"grad-cam": {"foo": 3}})
    nested = cnnvis.explain(
        tiny_cnn,
        tiny_input[:1],
        "integrated-gradients",
        params={"integrated-gradients": {"steps": 3}},
    )
    assert nested.params["steps"] == 3


def test_unknown_parameter_is_raised_even_with_a_failures_dict(tiny_cnn, tiny_input):
    """explain_many(failures=...) records methods that cannot run on the model; a misspelled
    parameter is the caller's mistake and stops the run before any pass."""
    failures: dict[str, cnnvis.CnnvisError] = {}
    with pytest.raises(ParamError, match="'foo'"):
        cnnvis.explain_many(
            tiny_cnn,
            tiny_input,
            ["gradient", "grad-cam"],
            failures=failures,
            params={"grad-cam": {"foo": 3}},
        )
    assert failures == {}


def test_misspelled_parameter_names_the_valid_ones(tiny_cnn, tiny_input):
    with pytest.raises(ParamError) as info:
        cnnvis.explain(tiny_cnn, tiny_input, "integrated-gradients", stpes=10)
    message = str(info.value)
    assert "did you mean steps?" in message
    for name in ("baseline", "steps", "quadrature", "batch_size", "seed", "blur_sigma"):
        assert name in message


def test_wrapping_method_takes_its_base_parameters(tiny_cnn, tiny_input):
    """SmoothGrad passes parameters on to its base: IG's steps are valid with base IG only."""
    e = cnnvis.explain(
        tiny_cnn,
        tiny_input[:1],
        "smoothgrad",
        base="integrated-gradients",
        steps=2,
        samples=2,
    )
    assert e.map.shape == (1, 3, 16, 16)
    with pytest.raises(ParamError, match=r"smoothgrad has no parameter 'steps'.*noise_level"):
        cnnvis.explain(tiny_cnn, tiny_input[:1], "smoothgrad", steps=2, samples=2)


def test_params_must_be_a_mapping_per_method(tiny_cnn, tiny_input):
    with pytest.raises(ParamError, match="must map parameter names"):
        cnnvis.explain_many(tiny_cnn, tiny_input, ["rise"], params={"rise": 500})  # type: ignore[dict-item]


def test_every_method_accepts_its_listed_parameters():
    """What `parameters` lists is exactly what check_params lets through."""
    for info in list_methods():
        check_params(info, dict.fromkeys(info.parameters))
        with pytest.raises(ParamError):
            check_params(info, {"no_such_parameter": 1})
    assert get_method("occlusion").parameters == ("window", "stride", "fill", "batch_size")
    assert get_method("grad-cam").parameters == ()
