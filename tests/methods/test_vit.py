"""Every CAM on vision transformers (random init): tokens on the patch grid, Swin's channels-last
outputs, and a default layer whose gradients are not zero."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from test_cam_family import CAMS, _corr, grad_cam_library_raw
from timm.models.vision_transformer import VisionTransformer
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

import cnnvis
from cnnvis.capture import record
from cnnvis.layers import token_grid
from cnnvis.postprocess import is_blank


def _image(n: int = 1, size: int = 224) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _check_maps(results, layer: str, grid: tuple[int, int], size: int = 224) -> None:
    assert set(results) == {(m, layer) for m in CAMS}
    for name in CAMS:
        e = results[(name, layer)]
        n = e.map.shape[0]
        assert e.layer_map.shape == (n, *grid) and e.map.shape == (n, size, size), name
        assert torch.isfinite(e.map).all(), name
        assert not is_blank(e.layer_map.clamp(min=0)).any(), name  # something to show


@pytest.fixture(scope="module")
def vit_tiny():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()


@pytest.fixture(scope="module")
def swin_t():
    torch.manual_seed(0)
    return torchvision.models.swin_t(weights=None).eval()


def test_every_cam_on_timm_vit_tiny_with_the_default_layer(vit_tiny):
    assert cnnvis.default_layer(vit_tiny) == "blocks.11.norm1"
    _check_maps(cnnvis.explain_many(vit_tiny, _image(), CAMS), "blocks.11.norm1", (14, 14))


def test_every_cam_on_torchvision_swin_t_with_the_default_layer(swin_t):
    # features.7.1.norm1 outputs (N, 7, 7, 768), channels last
    assert cnnvis.default_layer(swin_t) == "features.7.1.norm1"
    layers = ["features.7.1.norm1", "norm", "permute"]
    results = cnnvis.explain_many(swin_t, _image(), CAMS, layers)
    _check_maps({k: v for k, v in results.items() if k[1] == layers[0]}, layers[0], (7, 7))
    # `permute` is `norm`'s (N, 7, 7, 768) output as (N, 768, 7, 7): the same maps
    for name in CAMS:
        a, b = results[(name, "norm")].layer_map, results[(name, "permute")].layer_map
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max())), name


def test_deit_distilled_and_torchvision_vit_defaults():
    torch.manual_seed(0)
    deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False).eval()
    assert cnnvis.default_layer(deit) == "blocks.11.norm1"  # (N, 2 + 196, 192): two dropped
    e = cnnvis.explain(deit, _image(), "layer-cam")
    assert e.layer_map.shape == (1, 14, 14) and not is_blank(e.layer_map).any()
    # torchvision's ViT class (vit_b_16's code) at a small size
    tv = TorchvisionViT(64, 16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64).eval()
    torch.nn.init.normal_(tv.heads.head.weight, std=0.02)  # torchvision zero-inits the head
    assert cnnvis.default_layer(tv, (1, 3, 64, 64)) == "encoder.layers.encoder_layer_1.ln_1"
    results = cnnvis.explain_many(tv, _image(2, 64), CAMS)
    _check_maps(results, "encoder.layers.encoder_layer_1.ln_1", (4, 4), 64)


def _patch_gradients(model: torch.nn.Module, layer: str, prefix: int) -> torch.Tensor:
    rec = record(model, _image(2, 32), [layer])
    return rec.layer_gradient(layer)[:, prefix:]


@pytest.mark.parametrize("head", ["token", "avg"])
def test_default_layer_has_patch_gradients_where_the_last_block_output_has_none(head):
    torch.manual_seed(0)
    kwargs = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    model = VisionTransformer(**kwargs, global_pool=head, reg_tokens=2).eval()
    default = cnnvis.default_layer(model, (1, 3, 32, 32))
    assert default == "blocks.1.norm1"
    assert (_patch_gradients(model, default, 3).abs().amax(dim=2) > 0).all()  # every token
    last_output = _patch_gradients(model, "blocks.1", 3)
    if head == "token":  # only the class token's row reaches the head: blank maps
        assert not last_output.any()
    else:
        assert (last_output.abs().amax(dim=2) > 0).all()
    results = cnnvis.explain_many(model, _image(2, 32), CAMS)  # class + 2 register tokens
    _check_maps(results, default, (4, 4), 32)


def test_tokens_match_pytorch_grad_cams_reshape_transform(vit_tiny):
    pytest.importorskip("pytorch_grad_cam")
    x = _image(2)
    layer = "blocks.11.norm1"
    ours = cnnvis.explain_many(vit_tiny, x, CAMS, layer)
    targets = ours[("grad-cam", layer)].targets

    def reshape(tokens):  # pytorch-grad-cam's documented ViT transform
        return tokens[:, 1:].reshape(tokens.shape[0], 14, 14, -1).permute(0, 3, 1, 2)

    modules = [vit_tiny.blocks[-1].norm1]
    theirs = grad_cam_library_raw(vit_tiny, modules, x, targets, reshape=reshape)
    for name in CAMS:
        if name == "grad-cam++":  # its 1e-6 eps dominates at |G| ~ 1e-5: see test_cam_family
            continue
        corr = _corr(ours[(name, layer)].layer_map, theirs[name][0])
        corr = corr.abs() if name == "eigen-cam" else corr
        assert corr.min() >= 0.999, (name, corr.tolist())


@pytest.mark.parametrize(
    ("tokens", "size", "patch", "grid"),
    [
        (197, (224, 224), (16, 16), (14, 14, 1)),  # ViT: class token
        (198, (224, 224), (16, 16), (14, 14, 2)),  # DeiT: class + distillation
        (196, (224, 224), None, (14, 14, 0)),  # global pool, no class token
        (201, (224, 224), None, (14, 14, 5)),  # class + 4 registers, patch size unknown
        (281, (224, 320), None, (14, 20, 1)),  # a non-square input
        (257, (224, 224), (14, 14), (16, 16, 1)),  # patch 14
    ],
)
def test_token_grid(tokens, size, patch, grid):
    assert token_grid(tokens, size, patch) == grid


def test_tokens_that_fit_no_grid_are_a_layer_error():
    with pytest.raises(cnnvis.LayerError, match="patch grid"):
        token_grid(200, (8, 8))
