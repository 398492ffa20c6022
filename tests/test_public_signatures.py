"""The public API shows its real signatures: no `(*args, **kwargs)` wrappers in `cnnvis`."""

from __future__ import annotations

import inspect

import pytest

import cnnvis
import cnnvis.evaluate
import cnnvis.images
import cnnvis.zoo

PUBLIC_CALLABLES = [
    name
    for name in cnnvis.__all__
    if callable(getattr(cnnvis, name)) and not inspect.isclass(getattr(cnnvis, name))
]


def _is_bare_wrapper(signature: inspect.Signature) -> bool:
    """Whether a signature takes only `*args` and/or `**kwargs` (says nothing of its arguments)."""
    kinds = {p.kind for p in signature.parameters.values()}
    return bool(kinds) and kinds <= {
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    }


def test_the_public_callables_are_found():
    assert {"load_model", "load_image", "evaluate", "explain", "sweep"} <= set(PUBLIC_CALLABLES)


@pytest.mark.parametrize("name", PUBLIC_CALLABLES)
def test_public_callable_has_a_real_signature(name: str):
    signature = inspect.signature(getattr(cnnvis, name))
    assert not _is_bare_wrapper(signature), f"cnnvis.{name}{signature}"
    assert signature.parameters, f"cnnvis.{name} takes no arguments"


def test_load_model_is_the_zoo_one():
    assert inspect.signature(cnnvis.load_model) == inspect.signature(cnnvis.zoo.load_model)
    assert cnnvis.load_model.__doc__ == cnnvis.zoo.load_model.__doc__
    assert list(inspect.signature(cnnvis.load_model).parameters) == [
        "name",
        "weights",
        "device",
        "trust_pickle",
    ]


def test_load_image_is_the_images_one():
    assert inspect.signature(cnnvis.load_image) == inspect.signature(cnnvis.images.load_image)
    assert cnnvis.load_image.__doc__ == cnnvis.images.load_image.__doc__


def test_evaluate_module_shows_and_takes_the_runner_signature():
    runner = cnnvis.evaluate.evaluate
    assert inspect.signature(cnnvis.evaluate) == inspect.signature(runner)
    assert list(inspect.signature(cnnvis.evaluate).parameters)[:2] == ["model", "images"]
    with pytest.raises(TypeError):  # the call binds like the function: an unknown keyword fails
        cnnvis.evaluate(None, no_such_argument=1)
