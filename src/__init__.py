"""digit-kit: a competition kit for Kaggle's Digit Recognizer (MNIST) on TensorFlow 2 and Keras 3.

Importing the package is cheap: TensorFlow and Keras load only with the modules that train and predict. The
layers of the package, each importing only those below it (checked by `lint-imports`, see setup.cfg):

| layer | modules |
| --- | --- |
| entry points | `cli` (`python -m src`), `kaggle_commands` (its Kaggle ones), `flags` (every kernel's flags), |
| | `console` (log lines, one-line errors) |
| workflows | `prepare` (`make data`), `blend`, `collect`, `tune.*` (`make tune`: space, study, summary) |
| Kaggle | `kaggle.*`: credentials, the CLI, metadata, bundles and notebooks, kernels, watching, the competition, |
| | scores |
| training | `training` (a run as a kernel tells it), `fitting`, `custom_loop`, `callbacks`, `pseudo_labels`, |
| | `restore`, `prediction`, `distribute`, `trial_hooks` (what a search asks of its trials' runs) |
| results | `finish`, `report`, `plots`, `runs_table`, `records`, `runs`, `results`, `folds`, `submission` |
| models and data | `models` (the registry), `optimizers`, `data`, `leaks`, `loaders`, `validation`, `tfrecord`, |
| | `pipelines`, `layout`, `sample` |
| ground | `config`, `machine`, `provenance`, `paths`, `files`, `filesystem`, `npz` (untrusted `.npz` files), `mnist`, |
| | `errors` |
"""

import os

# Keras 3 picks its backend at import time; the kit is written for TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
