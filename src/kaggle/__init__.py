"""Kaggle: everything the kit asks of Kaggle, through the kaggle CLI, and what it pushes there.

| module | holds |
| --- | --- |
| `credentials` | where the CLI finds `kaggle.json`, the user's name, and keeping keys out of what is printed |
| `command` | running the kaggle CLI, and its failures as one line naming the cause and the fix |
| `metadata` | `kernel-metadata.json`: its checks, the owner, accelerators, fold kernels' ids |
| `bundle` | the pushed `kernel.py`: the kernel's own code first, the kit's `src` package carried at its end |
| `notebook` | the pushed `kernel.ipynb`: the kernel's `# %%` cells, the package in a hidden first code cell |
| `kernels` | push, push-folds, status, log and output of kernels; the machine Kaggle kept, read back |
| `watch` | waiting for pushed kernels to finish (`make watch`), then fetching, checking and submitting |
| `competition` | the competition's files (`make data`) and submitting to it (refusing a leaking run) |
| `scores` | the public scores of the account's submissions, matched to the kit's logs (`make scores`) |

The package imports no training module: it pushes and fetches files, and never trains.
"""
