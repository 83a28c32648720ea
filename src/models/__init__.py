"""The model registry: the Sequential CNNs any kernel can train by name (`--model NAME`).

Importing it is cheap: the names are here, and a model's module (which imports Keras) loads only when
`build_model()` builds it, so that `--help` and flag errors answer before TensorFlow loads.

Every factory takes the input shape (from `src.layout.input_shape()`, the one channels decision) and returns an
uncompiled `keras.Sequential` that maps images to `(B, 10)` probabilities, its softmax in float32.
"""

import importlib

from src import config

# name -> (module in src.models, factory); the factory's docstring says what the model is.
MODELS = {
    "seed_cnn": ("classic", "build_seed_cnn"),
    "tfwiki_cnn": ("classic", "build_tfwiki_cnn"),
    "mlp": ("classic", "build_mlp"),
    "strong_cnn": ("strong", "build_strong_cnn"),
    "fast_cnn": ("classic", "build_fast_cnn"),
    "strong_cnn_affine": ("strong", "build_strong_cnn_affine"),
}
MODEL_NAMES = tuple(MODELS)


def model_factory(name: str):
    """Returns the factory of a registered model: `factory(input_shape) -> keras.Sequential`.

    Raises:
        KitError: `name` is not registered; the message lists the known names.
    """
    config.check_choice("model", name, MODEL_NAMES)
    module, function = MODELS[name]
    # Imported here, not at the top: a model's module loads Keras (see above).
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def build_model(name: str, input_shape: tuple[int, int, int]):
    """Builds a registered model by name.

    Args:
        name: one of `MODEL_NAMES`.
        input_shape: `(28, 28, 1)` or `(1, 28, 28)`, from `src.layout.input_shape()`.

    Returns:
        An uncompiled `keras.Sequential` mapping `(B, *input_shape)` images to `(B, 10)` probabilities.

    Raises:
        KitError: `name` is not registered.
    """
    return model_factory(name)(input_shape)
