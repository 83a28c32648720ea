"""MNIST's shape and the competition's files: 28x28 images, ten digits, and the CSV columns Kaggle ships."""

IMAGE_SIZE = 28
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 10
# The arrays of an mnist.npz in the Keras layout (what `keras.datasets.mnist.load_data()` returns).
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
TRAIN_CSV = "train.csv"
TEST_CSV = "test.csv"
SAMPLE_SUBMISSION_CSV = "sample_submission.csv"
PIXEL_COLUMNS = tuple(f"pixel{index}" for index in range(NUM_PIXELS))
# The competition's test split: every submission has this many rows.
COMPETITION_TEST_ROWS = 28_000
