"""digit-kit: a competition kit for Kaggle's Digit Recognizer (MNIST) on TensorFlow 2 and Keras 3.

Importing the package is cheap: TensorFlow and Keras are imported only by the modules that train
(`src.models`, `src.training`) and by the functions that need them.
"""

import os

# Keras 3 picks its backend at import time; the kit is written for TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up chatter (oneDNN, CPU features) hides the kit's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
