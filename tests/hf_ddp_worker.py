"""One rank of a 2-process CPU (gloo) Hugging Face Trainer run under torchrun, for test_transformers.

Usage: ``python -m torch.distributed.run --nproc_per_node 2 hf_ddp_worker.py OUTPUT_DIR RESULTS_DIR``.
Each rank trains the tests' tiny model with the DiskGuardCallback and writes what it saw to
``RESULTS_DIR/rank-N.json``: the step it stopped at, whether its guard deletes, the warnings.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch.distributed
from diskguard.transformers import DiskGuardCallback
from test_transformers import trainer


def main(output_dir: str, results_dir: str) -> None:
    callback = DiskGuardCallback(check_every_steps=1)
    run = trainer(Path(output_dir), [callback], ddp_backend='gloo')
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter('always')
        run.train()
    assert callback.guard is not None
    result = {
        'rank': run.args.process_index,
        'world_size': run.args.world_size,
        'global_step': run.state.global_step,
        'deletes': callback.guard.deletes,
        'stop_reason': callback.guard.stop_reason,
        'warnings': [str(w.message) for w in warned],
    }
    Path(results_dir, f'rank-{run.args.process_index}.json').write_text(json.dumps(result))


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
    # As torch's docs ask: a gloo group alive at exit aborts the process now and then ("terminate
    # called without an active exception", pytorch/pytorch#190489), and the Trainer leaves it.
    torch.distributed.destroy_process_group()
