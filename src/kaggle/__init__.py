"""Kaggle: everything the kit asks of Kaggle, through the kaggle CLI, and what it pushes there.

| module | holds |
| --- | --- |
| `credentials` | where the CLI finds `kaggle.json`, the user's name, and keeping keys out of what is printed |
| `command` | running the kaggle CLI, and its failures as one line naming the cause and the fix |
| `metadata` | `kernel-metadata.json`: its checks, the owner, accelerators, fold kernels' ids |
| `bundle` | the pushed `kernel.py`: the kernel's own code first, the kit's `src` package carried at its end |
| `kernels` | push, push-folds, status and output of kernels |
| `competition` | the competition's files (`make data`) and submitting to it |

The package imports no training module: it pushes and fetches files, and never trains.
"""
