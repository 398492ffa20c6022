"""What each registered method is called in the peer libraries (Captum, pytorch-grad-cam,
TorchCAM, Zennit): the methods reference of the documentation site shows it, and a test keeps
one entry per registered method. Agreement with the peers is tested where both compute the
same thing (tests/methods, tests/targets, benchmarks/)."""

from __future__ import annotations

PEERS: dict[str, tuple[str, ...]] = {
    "gradient": ("Captum `Saliency(abs=False)`",),
    "guided-backprop": ("Captum `GuidedBackprop`", "pytorch-grad-cam `GuidedBackpropReLUModel`"),
    "deconvnet": ("Captum `Deconvolution`",),
    "gradient-x-input": ("Captum `InputXGradient`",),
    "integrated-gradients": ("Captum `IntegratedGradients`",),
    "smoothgrad": ("Captum `NoiseTunnel(..., nt_type='smoothgrad')`",),
    "gradient-shap": ("Captum `GradientShap`",),
    "deeplift": ("Captum `DeepLift`",),
    "deeplift-shap": ("Captum `DeepLiftShap`",),
    "feature-ablation": ("Captum `FeatureAblation`",),
    "kernel-shap": ("Captum `KernelShap`",),
    "lime": ("Captum `Lime`",),
    "shapley-sampling": ("Captum `ShapleyValueSampling`",),
    "lrp": ("Zennit `EpsilonPlusFlat` and the other composites", "Captum `LRP`"),
    "cam": ("TorchCAM `CAM`",),
    "grad-cam": ("Captum `LayerGradCam`", "TorchCAM `GradCAM`", "pytorch-grad-cam `GradCAM`"),
    "guided-grad-cam": ("Captum `GuidedGradCam`",),
    "grad-cam++": ("TorchCAM `GradCAMpp`", "pytorch-grad-cam `GradCAMPlusPlus`"),
    "xgrad-cam": ("TorchCAM `XGradCAM`", "pytorch-grad-cam `XGradCAM`"),
    "layer-cam": ("TorchCAM `LayerCAM`", "pytorch-grad-cam `LayerCAM`"),
    "hires-cam": ("pytorch-grad-cam `HiResCAM`",),
    "eigen-cam": ("pytorch-grad-cam `EigenCAM`",),
    "score-cam": ("TorchCAM `ScoreCAM`", "pytorch-grad-cam `ScoreCAM`"),
    "ablation-cam": ("pytorch-grad-cam `AblationCAM`",),
    "occlusion": ("Captum `Occlusion`",),
    "drise": (
        "none of the four (Petsiuk et al. 2021's D-RISE; pytorch-grad-cam has no detector saliency without gradients)",
    ),
    "rise": ("none of the four (Petsiuk et al.'s reference code)",),
}


def peers_of(name: str) -> tuple[str, ...]:
    """The peer libraries' names for method `name` (empty when none is recorded)."""
    return PEERS.get(name, ())
