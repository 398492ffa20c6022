"""The JSON answers of the API, as pydantic models (they make the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """Every error: what went wrong and what to do, in plain words."""

    detail: str = Field(description="what went wrong and what to do")
    error: str = Field(description="the kind of error, e.g. ImageError, ModelError, TooLarge")


class ModelOut(BaseModel):
    name: str
    weights: str | None = Field(description="the weights this server uses for it")
    served: bool = Field(description="the model the server was started with")
    loaded: bool = Field(description="in memory now (the others load on first use)")
    local: bool | None = Field(description="its weights are on this machine (no download)")


class ModelsOut(BaseModel):
    default: str
    cache_size: int = Field(description="how many models stay loaded at once")
    models: list[ModelOut]


# one row of MethodInfo.to_row() (tests/methods/test_registry.py checks the keys match)
class MethodOut(BaseModel):
    name: str
    kind: str = Field(description="pixel: a map per input pixel; cam: a map at a layer")
    summary: str
    formula: str
    paper: str
    passes: str
    needs: list[str]
    needs_layer: bool
    many_passes: bool = Field(description="costs many forward passes: slow on a CPU")


class LayerOut(BaseModel):
    name: str
    type: str
    output_shape: list[int] | None
    default: bool = Field(description="the layer CAM methods use when none is given")
    sweep: bool = Field(description="a layer of the default sweep (the main path)")
    spatial: bool = Field(description="has an (N, C, H, W) output, so CAM methods can use it")


class LayersOut(BaseModel):
    model: str
    input_size: int
    default: str | None
    layers: list[LayerOut]


class SamplesOut(BaseModel):
    default: str | None
    samples: list[str]


class LimitsOut(BaseModel):
    max_upload_bytes: int = Field(description="larger request bodies get 413")
    max_pending_bytes: int = Field(
        description="request bodies held in memory at once (read or waiting); past it, 503"
    )
    max_pixels: int = Field(description="images with more pixels get 422 (before decoding)")
    workers: int = Field(description="requests doing model work at once; the others wait")
    cache_size: int = Field(description="models kept loaded")
    max_results: int = Field(description="results kept for their downloads")
    work: dict[str, int] = Field(
        description="largest method parameters a request may set (min_stride: the smallest)"
    )
    allow_models: list[str] = Field(description="models a request may choose (fnmatch patterns)")


class ColormapsOut(BaseModel):
    default: str
    colormaps: dict[str, str] = Field(
        description="256 RGB colours per colormap, as one hex string (6 digits a colour)"
    )
    signed: str = Field(
        description="the diverging colormap of signed maps (zero at 128), as the others"
    )


class PredictionOut(BaseModel):
    index: int
    name: str
    probability: float


class ClassifyOut(BaseModel):
    model: str
    source: str
    image_size: list[int] = Field(description="the uploaded image's width and height")
    input: str = Field(description="the picture the model saw (resized, cropped) as a PNG data URL")
    predictions: list[PredictionOut]
    seconds: float


class TargetOut(BaseModel):
    requested: str
    index: int = Field(description="the explained class (-1 for a unit inside the network)")
    name: str
    probability: float | None


class MapOut(BaseModel):
    method: str
    kind: str
    layer: str | None
    title: str
    values: str = Field(
        description="the map's display values (0-255) as a grayscale PNG data URL, to colour "
        "with a colormap and lay over `input`"
    )
    display: str = Field(description="how the raw map became the display values")
    blank: bool = Field(description="the map is constant: nothing to show")
    signed: bool = Field(
        default=False,
        description="the values are signed, zero at 128: colour them with the `signed` "
        "colormap of /api/colormaps (red raised the score, blue lowered it)",
    )


class SkippedOut(BaseModel):
    method: str
    detail: str


class DownloadsOut(BaseModel):
    figure: str = Field(description="the figure as PNG; add ?cmap=NAME&alpha=0.5 to restyle it")
    maps: str = Field(description="the raw, signed maps as NPZ (NumPy)")
    manifest: str = Field(description="what was run, on what, with which result, as JSON")


class ExplainOut(BaseModel):
    id: str
    model: str
    source: str
    image_size: list[int]
    input: str
    target: TargetOut
    predictions: list[PredictionOut]
    maps: list[MapOut]
    skipped: list[SkippedOut]
    notes: list[str] = Field(
        default_factory=list,
        description="what the user should know, e.g. only the first frame of an animation was used",
    )
    downloads: DownloadsOut
    seconds: float


class SweepLayerOut(BaseModel):
    name: str
    output_shape: list[int]
    values: str
    blank: bool


class SweepOut(BaseModel):
    id: str
    model: str
    method: str
    source: str
    image_size: list[int]
    input: str
    display: str
    target: TargetOut
    predictions: list[PredictionOut]
    layers: list[SweepLayerOut]
    notes: list[str] = Field(
        default_factory=list,
        description="what the user should know, e.g. only the first frame of an animation was used",
    )
    downloads: DownloadsOut
    seconds: float
